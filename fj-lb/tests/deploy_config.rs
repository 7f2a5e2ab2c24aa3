//! The shipped example config must stay valid as the config grows.
use fj_lb::model::config::{self, HostView};

struct AnyHost;
impl HostView for AnyHost {
    fn interface_exists(&self, _: &str) -> bool {
        true
    }
}

#[test]
fn the_example_two_host_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/fj-lb.toml");
    let text = std::fs::read_to_string(path).expect("deploy/fj-lb.toml exists");
    let c = config::parse(&text, path, &AnyHost).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.services.len(), 5);
    let v = c.vrrp.first().expect("the example runs VRRP");
    assert_eq!((v.vrid, v.priority), (51, 150));
    let host_b = config::parse(&text.replace("priority = 150", "priority = 100"), path, &AnyHost).unwrap();
    assert_eq!(host_b.services, c.services, "host B differs only in its VRRP priority");
}

#[test]
fn the_example_ecmp_config_is_valid_and_announces_its_vip() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/fj-lb-ecmp.toml");
    let text = std::fs::read_to_string(path).expect("deploy/fj-lb-ecmp.toml exists");
    let c = config::parse(&text, path, &AnyHost).unwrap_or_else(|e| panic!("{e}"));
    let a = c.announce.expect("the example announces");
    assert_eq!(a.table, 100);
    assert_eq!(a.vips, vec!["10.0.0.100".parse::<std::net::IpAddr>().unwrap()], "two services, one VIP, one route");
    assert!(c.vrrp.is_empty(), "[announce] and [vrrp] are alternatives");
    // deploy/bird.conf exports that same table.
    let bird = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/bird.conf")).expect("deploy/bird.conf exists");
    let source = format!("krt_source = {}", fj_lb::model::announce::ROUTE_PROTOCOL);
    assert!(bird.contains("kernel table 100;") && bird.contains(&source), "deploy/bird.conf learns fj-lb's routes in its table");
}
