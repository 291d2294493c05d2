#!/usr/bin/env bash
# Builds the AWS Lambda package (runtime provided.al2023, handler `bootstrap`):
#
#   target/lambda/audit-archiver-lambda-x86_64.zip
#     bootstrap     the audit-archiver binary (started as `bootstrap` it runs `lambda`)
#     router.cwasm  the embedded component compiled to native code by that very
#                   binary, so a cold start does no compilation
#
# Amazon Linux 2023 has glibc 2.34: the script refuses a binary that needs a
# newer glibc symbol (objdump -T).
#
#   scripts/package-lambda.sh            # x86_64 (this machine's architecture)
#   scripts/package-lambda.sh --arm64    # arm64 (Graviton), cross-built; see docs/deploy-aws.md
#   scripts/package-lambda.sh --no-build # package target/release/audit-archiver as built
#                                        # (scripts/test.sh, after its own build)
set -euo pipefail
cd "$(dirname "$0")/.."

arch=x86_64
target=""
build=1
for option in "$@"; do
    case "$option" in
        --arm64) arch=arm64; target=aarch64-unknown-linux-gnu ;;
        --no-build) build=0 ;;
        *) echo "usage: $0 [--arm64] [--no-build]" >&2; exit 2 ;;
    esac
done
max_glibc=2.34
out=target/lambda/$arch
zip_path=target/lambda/audit-archiver-lambda-$arch.zip

if [[ -z "$target" ]]; then
    [[ $build == 0 ]] || cargo build --release -p audit-archiver --bin audit-archiver
    binary=target/release/audit-archiver
    objdump=objdump
    strip=strip
else
    # Needs: rustup target add aarch64-unknown-linux-gnu
    #        apt-get install gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu
    [[ $build == 0 ]] || CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
        cargo build --release -p audit-archiver --bin audit-archiver --target "$target"
    binary=target/$target/release/audit-archiver
    objdump=aarch64-linux-gnu-objdump
    strip=aarch64-linux-gnu-strip
fi

rm -rf "$out" "$zip_path"
mkdir -p "$out"
cp "$binary" "$out/bootstrap"
"$strip" "$out/bootstrap"

newest=$("$objdump" -T "$out/bootstrap" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
if [[ "$(printf '%s\n%s\n' "$newest" "$max_glibc" | sort -V | tail -1)" != "$max_glibc" ]]; then
    echo "error: bootstrap needs glibc $newest; provided.al2023 has $max_glibc" >&2
    exit 1
fi

files=(bootstrap)
if [[ -z "$target" ]]; then
    # The artifact is bound to this binary's wasmtime and engine settings.
    "$out/bootstrap" lambda --precompile-to "$out/router.cwasm"
    files+=(router.cwasm)
else
    echo "note: no router.cwasm for arm64 (it must be compiled by the arm64 binary);" \
        "the function compiles the component at init instead" >&2
fi

(cd "$out" && zip -q -9 -X "../$(basename "$zip_path")" "${files[@]}")
echo "$zip_path: $(stat -c %s "$zip_path") bytes (bootstrap needs glibc <= $newest)"
