//! The `clavitor` binary; everything lives in the library (see `src/lib.rs`).

// glibc's malloc and free, contended between the request threads and the writer, were the
// largest single cost of a write (BENCHMARKS.md, "The audit trail's cost").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    clavitor::cli::main()
}
