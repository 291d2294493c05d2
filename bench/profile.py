#!/usr/bin/env python3
"""Where a drainer's CPU goes, by category (BENCHMARKS.md, section 3): reads
`perf record` data of one or more drainers and prints one Markdown table,
µs per archived message and share, one column per drainer.

  mkdir -p /tmp/prof
  bench/endpoint.sh --repeat 1 --perf /tmp/prof      # or .venv/bin/python bench/endpoint.py ...
  bench/profile.py host=/tmp/prof/host-standard-20000.data:157.9 \\
      host-system-alloc=/tmp/prof/host-system-alloc-standard-20000.data:185.7 \\
      bare=/tmp/prof/bare-standard-20000.data:181.6

Each argument is LABEL=FILE:US, US being the CPU µs per archived message of
that same run (the `cpu_us_per_msg` column bench/endpoint.py prints for it;
under perf it is inflated by perf's own sampling, so profile with it, do not
compare it with runs without perf). Without :US the table gives shares only.
perf resolves symbols from the binaries as they are when this runs, and
bench/endpoint.py gives perf no HOME, so nothing lands in perf's build-id
cache: run this before the next `cargo build`, or keep the binaries with
`perf buildid-cache -a target/release/audit-archiver -a
target/release/audit-archiver-system-alloc -a target/release/examples/bare_loop`
right after the run (a rebuilt binary shows up here as `0x…` symbols in the
last row). `--other N` also lists each drainer's N largest symbols that no
rule claimed (to check the rules), `--top N` its N largest symbols with their
category.

The samples come from `perf report -i FILE --stdio --no-children --sort
dso,symbol -F period,dso,sym` (weighted by period, i.e. CPU-clock
nanoseconds, not by sample count). Each (shared object, symbol) goes to the
first category whose rule matches, in the order of RULES below. Rules match
the symbol's subject: for `<X as Trait>::f` and `core::ptr::drop_in_place<X>`
that is X, so `<http::HeaderMap<T> as Extend<..>>::extend` counts as HTTP and
`drop_in_place<aws_smithy_types::..>` as the SDK. Symbols perf could not
resolve (`0x…`) and everything not claimed land in the last row.
"""
import argparse
import re
import subprocess
import sys
from collections import defaultdict

SEP = "\x1f"

# (row label, shared-object regex or None, subject regex or None); first match
# wins. Either regex may be None (matches anything); both must match.
RULES = [
    ("allocator (mimalloc `mi_*`; glibc `malloc`, `free`, `realloc`, consolidation)",
     None,
     r"^(_?mi_|mimalloc::|(__rustc::)?__r(ust|dl)_(alloc|dealloc|realloc|alloc_zeroed"
     r"|no_alloc_shim\w*)|(__libc_)?(malloc|calloc|realloc|free|cfree)\b"
     r"|_int_(malloc|free|realloc|memalign)|malloc_consolidate|unlink_chunk|alloc_perturb"
     r"|_mid_memalign|tcache_|sysmalloc|arena_|(posix_)?memalign|aligned_alloc)"),
    ("`memmove`/`memcmp`/`memset`", r"^libc", r"^__(mem(move|cpy|cmp|set)|bcmp)"),
    ("**routing component** (compiled wasm, wasmtime calls)", r"\.cwasm$", None),
    ("**routing component** (compiled wasm, wasmtime calls)", None,
     r"^(wasmtime|cranelift|wasm\[|wasmtime_|wit_)"),
    ("kernel: TCP over loopback, scheduling, syscalls", r"^\[kernel", None),
    ("SigV4 (canonical request, signing) and SHA-256 (payload checksum, signing)", None,
     r"^(aws_sigv4|sha2|hmac|digest|ring|aws_lc_rs|aws_smithy_checksums|hex|base64_simd"
     r"|crc32\w*|md5)::|sigv4|SigV4"),
    ("SDK JSON/XML (de)serialization", None,
     r"^(aws_smithy_json|aws_smithy_xml|xmlparser|aws_smithy_query)::|::protocol_serde::"),
    ("HTTP: hyper client, `http` header maps, `bytes`", None,
     r"^(hyper|hyper_util|hyper_rustls|http|http_body|http_body_util|httparse|h2|bytes"
     r"|aws_smithy_http_client|tower|tower_service|rustls|want|try_lock)::"),
    ("AWS SDK orchestrator: interceptors, runtime components and config layers, "
     "endpoint resolution, retries", None,
     r"^(aws_smithy_\w+|aws_runtime|aws_sdk_\w+|aws_types|aws_config|aws_credential_types"
     r"|url|idna|uuid|fastrand)::"),
    ("tokio and futures", None,
     r"^(tokio|futures\w*|mio|atomic_waker|pin_project\w*)::|^core::future::"),
    ("**host's own code** (`audit_archiver::`; bare: `bare_loop::` and client set-up)", None,
     r"^(audit_archiver\w*|bare_loop)::"),
]
OTHER = "formatting, strings, hashing, tracing, other"


# Wrappers whose parameter says more than they do.
WRAPPERS = re.compile(r"^(core::ptr::drop_in_place|core::option::Option|core::result::Result"
                      r"|core::pin::Pin|alloc::boxed::Box|alloc::sync::Arc)<")
# Subjects that name no crate of their own (`<&str as http::..>`, `<T as ..>`):
# the trait's crate says more.
ANONYMOUS = re.compile(r"^(&(mut )?|\*(const|mut) |dyn |\(|\[)*"
                       r"(str|u8|u16|u32|u64|usize|i\d+|bool|char|[A-Z]\w?|core::\S+|alloc::\S+"
                       r"|std::\S+) as ")


def subject(symbol):
    """The part of a demangled symbol the rules look at: `<X as T>::f` gives
    `X as T>::f` (or `T>::f` when X names no crate: `&str`, `T`, `core::..`),
    `core::ptr::drop_in_place<X>` and `Option<X>` give X…, anything else the
    symbol itself."""
    s = symbol.strip()
    for _ in range(6):
        m = WRAPPERS.match(s)
        if m:
            s = s[m.end():]
            continue
        if s.startswith("(") or s.startswith("&"):
            s = s.lstrip("(&")
            continue
        if s.startswith("<") and " as " in s:
            s = s[1:]
            if ANONYMOUS.match(s):
                s = s[s.index(" as ") + 4:]
            continue
        break
    return s


def categorize(dso, symbol):
    subj = subject(symbol)
    for label, dso_re, sym_re in RULES:
        if dso_re and not re.search(dso_re, dso):
            continue
        if sym_re and not re.search(sym_re, subj):
            continue
        return label
    return OTHER


def read_profile(path, perf="perf"):
    """{(dso, symbol): period} from `perf report`."""
    out = subprocess.run(
        [perf, "report", "-i", path, "--stdio", "--no-children", "--sort", "dso,symbol",
         "-F", "period,dso,sym", "-t", SEP],
        check=True, capture_output=True, text=True, errors="replace").stdout
    samples = defaultdict(int)
    for line in out.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(SEP)
        if len(fields) < 3:
            continue
        period, dso, sym = fields[0].strip(), fields[1].strip(), fields[2].strip()
        sym = re.sub(r"^\[[.kgu]\]\s+", "", sym)
        samples[(dso, sym)] += int(period)
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profiles", nargs="+", metavar="LABEL=FILE[:US]",
                        help="a perf.data file, its column label and that run's CPU µs per message")
    parser.add_argument("--other", type=int, default=0, metavar="N",
                        help="also list the N largest unclaimed symbols of each profile")
    parser.add_argument("--top", type=int, default=0, metavar="N",
                        help="also list the N largest symbols of each profile with their row")
    parser.add_argument("--perf", default="perf", help="the perf binary")
    args = parser.parse_args()

    columns = []
    for spec in args.profiles:
        label, _, rest = spec.partition("=")
        if not rest:
            raise SystemExit(f"expected LABEL=FILE[:US], got {spec!r}")
        path, us = rest, None
        m = re.match(r"^(.*):([0-9.]+)$", rest)
        if m:
            path, us = m.group(1), float(m.group(2))
        samples = read_profile(path, args.perf)
        rows = defaultdict(int)
        for (dso, sym), period in samples.items():
            rows[categorize(dso, sym)] += period
        columns.append((label, us, samples, rows, sum(samples.values())))

    order = list(dict.fromkeys([r[0] for r in RULES] + [OTHER]))
    print("| where | " + " | ".join(c[0] for c in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for row in order:
        cells = []
        for _, us, _, rows, total in columns:
            share = rows.get(row, 0) / total if total else 0
            if not rows.get(row):
                cells.append("—")
            elif us is None:
                cells.append(f"{100 * share:.0f} %")
            else:
                cells.append(f"{us * share:.1f} µs ({100 * share:.0f} %)")
        print(f"| {row} | " + " | ".join(cells) + " |")
    print("| total (the run's CPU per message, under perf) | " + " | ".join(
        f"{us:.1f} µs ({total / 1e6:.0f} ms sampled)" if us is not None
        else f"{total / 1e6:.0f} ms sampled" for _, us, _, _, total in columns) + " |")

    for label, _, samples, _, total in columns:
        for n, title, keep in [(args.other, "unclaimed", lambda c: c == OTHER),
                               (args.top, "largest", lambda c: True)]:
            if not n:
                continue
            print(f"\n{label}: {n} {title} symbols", file=sys.stderr)
            ranked = sorted(samples.items(), key=lambda kv: -kv[1])
            shown = 0
            for (dso, sym), period in ranked:
                cat = categorize(dso, sym)
                if not keep(cat):
                    continue
                print(f"  {100 * period / total:5.2f} %  {dso}  {sym[:140]}"
                      + ("" if cat == OTHER else f"  → {cat[:40]}"), file=sys.stderr)
                shown += 1
                if shown >= n:
                    break


if __name__ == "__main__":
    main()
