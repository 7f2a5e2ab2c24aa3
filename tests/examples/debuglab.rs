// temporary debugging aid
use std::time::Duration;
fn main() {
    let mut topo = fj_lb_tests::Topology::builder().backends(3).build();
    let bin = fj_lb_tests::fj_lb_bin();
    topo.start_xdp_pass(&bin);
    let cfg = topo.config(&[(1, 100), (2, 100), (3, 100)]);
    std::fs::write(topo.tmp().join("c.toml"), &cfg).unwrap();
    let mut cmd = std::process::Command::new(&bin);
    cmd.arg("run").arg("--config").arg(topo.tmp().join("c.toml")).env("NO_COLOR", "1").env("RUST_LOG", "debug");
    let _d = topo.lb().ns.spawn_command("fj-lb", cmd, &topo.tmp().join("d.log"));
    println!("id {} tmp {}", topo.id(), topo.tmp().display());
    std::thread::sleep(Duration::from_secs(std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(120)));
}
