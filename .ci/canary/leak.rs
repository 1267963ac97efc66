//! LeakSanitizer canary for .ci/sanitizers.sh: loses a heap block on purpose, so a build
//! whose leak check is not really on fails the step instead of passing it silently.

fn main() {
    let block = Box::new([7u8; 4096]);
    let addr = Box::into_raw(block) as usize;
    // Forget every pointer to the block: only a number derived from it survives.
    println!("lost a block near {:#x}", addr ^ 0x5555);
}
