//! The handler of each control request. Most are answered here on the loop; `flows` walks
//! the flow table, so it is answered from a blocking task on the pinned map.
use std::{net::IpAddr, time::Instant};

use tokio::sync::oneshot;

use super::{Daemon, sampling::count_update};
use crate::{
    control::{
        Reply, Request, Response,
        protocol::{FlowsReply, parse_backend_filter},
        server::Stream,
    },
    model::config::Protocol,
    report::{
        status::{self, Names},
        trace::Wanted,
    },
};

type Answer = Response<Reply>;

impl Daemon {
    pub(super) async fn on_control(&mut self, req: Request, reply: oneshot::Sender<Answer>, stream: Option<Stream>) {
        let answer = match req {
            Request::Flows { service, backend, limit } => {
                return self.flows(service, backend, limit.unwrap_or(100), reply);
            }
            Request::Drain { service, backend } => self.set_weight(&service, &backend, Some(0)),
            Request::Weight { service, backend, weight } => self.set_weight(&service, &backend, Some(weight)),
            Request::Enable { service, backend } => self.set_weight(&service, &backend, None),
            Request::Reload {} => match self.reload().await {
                Ok(r) => Response::ok(Reply::Reloaded(r)),
                Err(e) => Response::err(e),
            },
            Request::Status {} => Response::ok(Reply::Status(Box::new(self.status()))),
            Request::Maglev { service } => match self.balancer.service(&service) {
                Some(st) => Response::ok(Reply::Maglev(status::maglev(st))),
                None => Response::err(format!("no service named {service:?}")),
            },
            Request::Stats {} => match self.dp.stats() {
                Ok(stats) => Response::ok(Reply::Stats(stats.into_iter().map(|(s, v)| (s.name().to_string(), v)).collect())),
                Err(e) => Response::err(e),
            },
            Request::Lookup { src, dst, protocol } => self.lookup(&src, &dst, &protocol),
            Request::Trace { vip, service, backend, reason, client, count } => {
                self.start_trace(Wanted { vip, service, backend, reason, client }, count, stream)
            }
        };
        let _ = reply.send(answer);
    }

    /// Drain (weight 0), weight N, or enable (back to the config's weight).
    fn set_weight(&mut self, service: &str, backend: &str, weight: Option<u32>) -> Answer {
        let started = Instant::now();
        match self.balancer.set_weight(service, backend, weight, &mut self.dp) {
            Ok(()) => {
                count_update(&self.metrics, "operator", started);
                Response::ok(Reply::Done)
            }
            Err(e) => Response::err(e),
        }
    }

    pub(super) fn status(&mut self) -> status::Status {
        let now = self.read_sample();
        let services = status::services(&self.balancer, &now, self.samples.front());
        let vrrp_instances = self.vrrp_statuses();
        status::Status {
            interface: self.config.interface.clone(),
            xdp_mode: self.mode.as_str().into(),
            program_id: self.dp.program_id(),
            uptime_s: self.started.elapsed().as_secs(),
            config: self.config_path.display().to_string(),
            vrrp: vrrp_instances.first().cloned(),
            vrrp_instances,
            announce: self.announce_status(),
            services,
            trace: self.trace.filter(),
        }
    }

    fn flows(&mut self, service: Option<String>, backend: Option<String>, limit: usize, reply: oneshot::Sender<Answer>) {
        let names = Names::of(&self.balancer);
        if let Some(s) = &service
            && !names.has_service(s)
        {
            let _ = reply.send(Response::err(format!("no service named {s:?}")));
            return;
        }
        let backend_ip: Option<IpAddr> = match parse_backend_filter(backend.as_deref()) {
            Ok(b) => b,
            Err(e) => {
                let _ = reply.send(Response::err(e));
                return;
            }
        };
        let capacity = self.config.flow_table_size;
        let walks = self.flow_walks.clone();
        tokio::task::spawn_blocking(move || {
            let resp = match walks.read() {
                Ok(entries) => {
                    let total_entries = entries.len();
                    let flows: Vec<status::FlowReport> = entries
                        .iter()
                        .map(|(k, v)| status::flow(&names, k, v.backend, v.service))
                        .filter(|f| service.as_ref().is_none_or(|s| f.service.as_ref() == Some(s)))
                        .filter(|f| backend_ip.is_none_or(|b| f.backend == Some(b)))
                        .take(limit)
                        .collect();
                    Response::ok(Reply::Flows(FlowsReply { total_entries, capacity, flows }))
                }
                Err(e) => Response::err(format!("reading the flow table: {e}")),
            };
            let _ = reply.send(resp);
        });
    }

    fn lookup(&mut self, src: &str, dst: &str, protocol: &str) -> Answer {
        let proto = match protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => return Response::err(format!("{other:?} is not tcp or udp")),
        };
        let key = match status::parse_endpoint(src)
            .and_then(|s| status::parse_endpoint(dst).map(|d| (s, d)))
            .and_then(|(s, d)| status::flow_key(s, d, proto))
        {
            Ok(k) => k,
            Err(e) => return Response::err(e),
        };
        let pinned = self.dp.flows().get(&key, 0).ok();
        match status::lookup(&self.balancer, &key, pinned, self.config.hash_seed) {
            Ok(r) => Response::ok(Reply::Lookup(r)),
            Err(e) => Response::err(e),
        }
    }
}
