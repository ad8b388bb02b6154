//! Channel security: a client opening a session without security on a server that
//! others (or it) reached over secured channels (`security_downgrade`).

use crate::analyze::bounded::Admitted;
use crate::analyze::*;

/// The baseline's key for "this client opened sessions without security on this
/// server while learning": the OPC UA CreateSession request's encoding id as the
/// command code.
const UNSECURED_SESSION_CODE: u32 = 461;

impl Analyzer {
    pub(in crate::analyze) fn channel_security(
        &mut self,
        ts_ns: u64,
        flow_id: u64,
        client: (IpAddr, u16),
        server: (IpAddr, u16),
        protocol: Protocol,
        secured: bool,
    ) {
        let key = (server.0, protocol);
        if secured {
            let (_, admitted) = self
                .secured_servers
                .entry(key, MAX_SECURED_SERVERS, |_| false);
            if admitted == Admitted::Evicted {
                self.state_capped("secured_servers", ts_ns, MAX_SECURED_SERVERS);
            }
            return;
        }
        let item = BaselineItem::Command {
            client: client.0,
            server: server.0,
            protocol,
            code: UNSECURED_SESSION_CODE,
        };
        if self.is_learning(ts_ns) {
            self.learn(item, ts_ns);
            return;
        }
        if self.secured_servers.get_mut(&key).is_none() || self.baseline.contains(&item) {
            return;
        }
        let subject = Subject {
            src: Some(client.0),
            src_port: Some(client.1),
            dst: Some(server.0),
            dst_port: Some(server.1),
            flow_id: Some(flow_id),
            app_proto: Some(protocol),
            ..Subject::default()
        };
        let (c, s) = (client.0, server.0);
        self.raise(
            "security_downgrade",
            ts_ns,
            subject,
            format!(
                "{c} opened a session without security (SecurityPolicy None) on {s}, which \
                 clients reached over signed channels before"
            ),
            Detail::Security {
                security_policy: "None",
                previously: "signed",
            },
            vec![item],
        );
    }
}
