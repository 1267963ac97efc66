//! `xev::compat::Compat` allocates nothing per poll: after warm-up, request/response
//! round trips through the wrapper (reads, writes, flushes, read-ahead, write-behind)
//! allocate nothing on the runtime's thread.

use runtime_tests::alloc_count::{allocs, Counting};

use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use xev::compat::Compat;
use xev::net::{TcpListener, TcpStream};

#[global_allocator]
static A: Counting = Counting;

#[xev::test(backend = "all")]
async fn round_trips_allocate_nothing_after_warm_up() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let mut c = Compat::new(client);
    let mut s = Compat::new(server);
    let request = [7u8; 200];
    let response = [9u8; 3000];
    let mut req_buf = [0u8; 200];
    let mut resp_buf = [0u8; 3000];
    let mut round_trip = async |c: &mut Compat<TcpStream>, s: &mut Compat<TcpStream>| {
        c.write_all(&request).await.unwrap();
        c.flush().await.unwrap();
        s.read_exact(&mut req_buf).await.unwrap();
        s.write_all(&response).await.unwrap();
        s.flush().await.unwrap();
        c.read_exact(&mut resp_buf).await.unwrap();
    };
    for _ in 0..200 {
        round_trip(&mut c, &mut s).await;
    }
    // Canary: the counter sees this thread's allocations.
    let before = allocs();
    drop(std::hint::black_box(vec![1u8; 10]));
    assert_eq!(allocs() - before, 1, "the counting allocator counts");
    let before = allocs();
    for _ in 0..1000 {
        round_trip(&mut c, &mut s).await;
    }
    let n = allocs() - before;
    assert_eq!(n, 0, "{n} allocations in 1000 round trips");
}
