//! Embeds the console's built assets (`console/dist`, committed; see `console/README.md`) in the
//! binary: one entry per file with its bytes, its gzip form (made here once, so serving never
//! compresses) and its content type, written to `$OUT_DIR/console_assets.rs`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let dist = manifest.join("../console/dist");
    // A directory makes cargo watch every file below it: a rebuilt console rebuilds the API.
    println!("cargo:rerun-if-changed={}", dist.display());

    let mut files = Vec::new();
    if dist.is_dir() {
        walk(&dist, &mut files);
    }
    files.sort();
    let mut table = String::from("&[\n");
    for path in &files {
        let rel = path
            .strip_prefix(&dist)
            .expect("below dist")
            .to_str()
            .unwrap_or_else(|| panic!("console asset name is not UTF-8: {}", path.display()))
            .replace('\\', "/");
        let bytes = std::fs::read(path)
            .unwrap_or_else(|e| panic!("read console asset {}: {e}", path.display()));
        let gz_name = format!("gz/{rel}.gz");
        let gz_path = out.join(&gz_name);
        std::fs::create_dir_all(gz_path.parent().expect("parent"))
            .unwrap_or_else(|e| panic!("create {}: {e}", gz_path.display()));
        let gz = gzip(&bytes);
        std::fs::write(&gz_path, &gz)
            .unwrap_or_else(|e| panic!("write {}: {e}", gz_path.display()));
        // Tiny files do not shrink: serve them as they are.
        let gz_expr = if gz.len() < bytes.len() {
            format!("Some(include_bytes!({:?}))", gz_path.display().to_string())
        } else {
            "None".to_owned()
        };
        writeln!(
            table,
            "    Asset {{ path: {:?}, body: include_bytes!({:?}), gzip: {gz_expr}, content_type: {:?} }},",
            format!("/{rel}"),
            path.display().to_string(),
            content_type(&rel),
        )
        .expect("write to string");
    }
    table.push(']');
    std::fs::write(out.join("console_assets.rs"), table)
        .unwrap_or_else(|e| panic!("write console_assets.rs: {e}"));
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    // mtime 0 and no file name (GzBuilder's defaults): the same input gives the same bytes.
    let mut encoder = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
