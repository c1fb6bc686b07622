//! Checks across services, once all are read: `depends_on` names services that exist, the
//! dependencies form no cycle, and no two publications claim the same host port.

use std::collections::{HashMap, HashSet};

use super::cx::{name_list, Cx};
use super::service::ServiceSpans;
use crate::manifest::diag::{did_you_mean, Diagnostic};
use crate::manifest::{Condition, Fixtures, Protocol, Service};

impl Cx<'_> {
    pub(super) fn cross_checks(&mut self, services: &[Service], spans: &[ServiceSpans]) {
        self.unknown_dependencies(services, spans);
        self.diags.extend(cycles(services, spans));
        self.host_port_conflicts(services, spans);
    }

    /// `completed` only on a job; `started` not on a data service (its dependents wait for
    /// its fixtures).
    pub(super) fn condition_checks(&mut self, services: &[Service], spans: &[ServiceSpans], fixtures: &[Fixtures]) {
        for (svc, sp) in services.iter().zip(spans) {
            for (dep, condition) in &svc.conditions {
                let (Some(target), Some(span)) = (services.iter().find(|s| &s.name == dep), sp.conditions.get(dep)) else { continue };
                match condition {
                    Condition::Completed if !target.job => self.diags.push(
                        Diagnostic::new(
                            span.clone(),
                            format!("service `{}` waits for `{dep}` to complete, but `{dep}` is not a job", svc.name),
                        )
                        .help(format!(
                            "`completed` means a job exited 0: add `job = true` to `{dep}`, or wait for \"ready\" or \"started\""
                        )),
                    ),
                    Condition::Started if fixtures.iter().any(|f| &f.service == dep) => self.diags.push(
                        Diagnostic::new(
                            span.clone(),
                            format!("service `{}` cannot wait only for `{dep}` to start: `{dep}` has fixtures", svc.name),
                        )
                        .help("dependents of a data service wait for its fixtures to be loaded; use \"ready\""),
                    ),
                    _ => {}
                }
            }
        }
    }

    fn unknown_dependencies(&mut self, services: &[Service], spans: &[ServiceSpans]) {
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        let known: HashSet<&str> = names.iter().copied().collect();
        for (svc, sp) in services.iter().zip(spans) {
            for (dep, span) in svc.depends_on.iter().zip(&sp.depends_on) {
                if known.contains(dep.as_str()) {
                    continue;
                }
                let help = match did_you_mean(dep, &names) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("defined services: {}", name_list(&names)),
                };
                self.diags
                    .push(Diagnostic::new(span.clone(), format!("service `{}` depends on unknown service `{dep}`", svc.name)).help(help));
            }
        }
    }

    /// Two services publishing the same host port and protocol on overlapping addresses (a
    /// specific address overlaps itself and the unspecified one).
    fn host_port_conflicts(&mut self, services: &[Service], spans: &[ServiceSpans]) {
        // (host port, protocol) → (host IP if specific, service) of each publication so far.
        type Publications<'a> = HashMap<(u16, Protocol), Vec<(Option<&'a str>, &'a str)>>;
        let mut published: Publications = HashMap::new();
        for (svc, sp) in services.iter().zip(spans) {
            for (p, span) in svc.ports.iter().zip(&sp.ports) {
                let Some(hp) = p.host_port else { continue };
                let ip = p.host_ip.as_deref().filter(|ip| *ip != "0.0.0.0" && *ip != "::");
                let entry = published.entry((hp, p.protocol)).or_default();
                if let Some((_, other)) = entry.iter().find(|(oip, _)| oip.is_none() || ip.is_none() || *oip == ip) {
                    let by = if *other == svc.name { "earlier in the same list".to_string() } else { format!("by service `{other}`") };
                    self.diags.push(
                        Diagnostic::new(span.clone(), format!("host port {hp}/{} is already published {by}", p.protocol.as_str()))
                            .help("pick another host port, or give only the container port to let Docker choose one"),
                    );
                } else {
                    entry.push((ip, &svc.name));
                }
            }
        }
    }
}

/// Every dependency cycle, found by a depth-first walk in file order; each is reported at the
/// `depends_on` entry that closes it.
fn cycles(services: &[Service], spans: &[ServiceSpans]) -> Vec<Diagnostic> {
    let mut search = CycleSearch {
        services,
        spans,
        index: services.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect(),
        state: vec![Visit::New; services.len()],
        path: Vec::new(),
        found: Vec::new(),
    };
    for i in 0..services.len() {
        if search.state[i] == Visit::New {
            search.visit(i);
        }
    }
    search.found
}

/// `a -> b -> a`; a long cycle keeps its first and last five services.
fn cycle_text(names: &[&str]) -> String {
    const END: usize = 5;
    if names.len() <= 2 * END + 1 {
        return names.join(" -> ");
    }
    let hidden = names.len() - 2 * END;
    format!("{} -> … {hidden} more … -> {}", names[..END].join(" -> "), names[names.len() - END..].join(" -> "))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    /// On the current path: reaching it again closes a cycle.
    OnPath,
    Done,
}

struct CycleSearch<'a> {
    services: &'a [Service],
    spans: &'a [ServiceSpans],
    index: HashMap<&'a str, usize>,
    state: Vec<Visit>,
    path: Vec<usize>,
    found: Vec<Diagnostic>,
}

impl CycleSearch<'_> {
    /// Depth-first from `root` with an explicit stack (a chain of thousands of services must not
    /// overflow the thread's stack); the order is that of the recursive walk.
    fn visit(&mut self, root: usize) {
        let (services, spans) = (self.services, self.spans);
        self.state[root] = Visit::OnPath;
        self.path.push(root);
        // Beside each service on the path: the next of its dependencies to follow.
        let mut next: Vec<usize> = vec![0];
        while let (Some(&i), Some(k)) = (self.path.last(), next.last_mut()) {
            if *k >= services[i].depends_on.len().min(spans[i].depends_on.len()) {
                self.path.pop();
                next.pop();
                self.state[i] = Visit::Done;
                continue;
            }
            let (dep, span) = (&services[i].depends_on[*k], &spans[i].depends_on[*k]);
            *k += 1;
            // Unknown names are reported on their own.
            let Some(&j) = self.index.get(dep.as_str()) else { continue };
            match self.state[j] {
                Visit::New => {
                    self.state[j] = Visit::OnPath;
                    self.path.push(j);
                    next.push(0);
                }
                Visit::OnPath if j == i => self.found.push(
                    Diagnostic::new(span.clone(), format!("service `{dep}` depends on itself"))
                        .help(format!("remove `{dep}` from its `depends_on`")),
                ),
                Visit::OnPath => {
                    let start = self.path.iter().position(|&p| p == j).unwrap_or(0);
                    let mut names: Vec<&str> = self.path[start..].iter().map(|&p| services[p].name.as_str()).collect();
                    names.push(&services[j].name);
                    self.found.push(
                        Diagnostic::new(span.clone(), format!("dependency cycle: {}", cycle_text(&names)))
                            .help("remove one of these `depends_on` entries"),
                    );
                }
                Visit::Done => {}
            }
        }
    }
}
