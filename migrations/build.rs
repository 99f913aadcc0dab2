//! `embed_migrations!` reads `sql/` at compile time; tell cargo to rebuild
//! when a migration is added or edited.
fn main() {
    println!("cargo:rerun-if-changed=sql");
}
