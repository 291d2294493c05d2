//! Writes the adapters' world: it imports `audit-archiver:routing/router` at
//! the version `wit/router.wit` declares, so the adapters follow the contract
//! file (the only copy of it) without naming its version a second time.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let contract = manifest_dir.join("../../wit/router.wit");
    println!("cargo:rerun-if-changed={}", contract.display());
    let text = std::fs::read_to_string(&contract)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", contract.display()));
    let package = text
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix("package audit-archiver:routing@"))
        .and_then(|rest| rest.strip_suffix(';'))
        .unwrap_or_else(|| {
            panic!(
                "{} declares no `package audit-archiver:routing@VERSION;`",
                contract.display()
            )
        });
    let world_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("router-client");
    std::fs::create_dir_all(&world_dir).unwrap();
    let world = format!(
        "package audit-archiver:adapters;\n\n\
         /// What an adapter imports: the router, filled by `wac plug`.\n\
         world router-client {{\n    import audit-archiver:routing/router@{package};\n}}\n"
    );
    std::fs::write(world_dir.join("router-client.wit"), world).unwrap();
}
