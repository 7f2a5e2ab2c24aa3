use std::time::Duration;
use fj_lb_tests::*;
#[test]
fn scratch_mapping_with_four() {
    let mut topo = Topology::builder().backends(4).build();
    let config = topo.config(&[(1, 100), (2, 100), (3, 100), (4, 100)]);
    let _d = Daemon::start(&mut topo, &config);
    let vip = topo.vip_addr();
    let m: Vec<String> = topo.client().run_in(|| (0..16u16).map(|i| get_from(vip, "/", Duration::from_secs(2), Some(21000 + i)).unwrap().1.trim().to_string()).collect());
    eprintln!("four from start: {m:?}");
}
