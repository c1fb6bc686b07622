//! `[schedule]`: what the daemon does on its own (cron rebuilds, idle teardown).

use super::cx::{Cx, Value};
use crate::manifest::diag::Diagnostic;
use crate::manifest::{Schedule, MAX_IDLE_TTL};

pub(super) const SCHEDULE_KEYS: &[&str] = &["rebuild", "idle_ttl"];

impl Cx<'_> {
    pub(super) fn schedule(&mut self, v: &Value<'_>) -> Option<Schedule> {
        let t = self.table(v, "`schedule`")?;
        self.unknown_keys(t, SCHEDULE_KEYS, "[schedule]");
        let rebuild = match t.get("rebuild") {
            Some(rv) => Some(self.cron(rv, "`schedule.rebuild`")?),
            None => None,
        };
        let idle_ttl = match t.get("idle_ttl") {
            Some(d) => Some(self.duration_up_to(d, "`schedule.idle_ttl`", MAX_IDLE_TTL)?),
            None => None,
        };
        Some(Schedule { rebuild, idle_ttl })
    }

    /// A cron expression croner accepts (5 fields, or 6 with seconds first).
    fn cron(&mut self, v: &Value<'_>, what: &str) -> Option<String> {
        let text = self.plain_string(v, what)?;
        if let Err(e) = text.parse::<croner::Cron>() {
            self.diags
                .push(Diagnostic::new(v.span(), format!("invalid cron expression `{text}` for {what}: {e}")).help(
                    "five fields (minute hour day month weekday), or six with seconds first, e.g. \"0 4 * * *\" for 04:00 every day",
                ));
            return None;
        }
        Some(text)
    }
}
