//! Model-facing tool names.
//!
//! Providers accept only `^[a-zA-Z0-9_-]{1,64}$`, and two MCP servers may
//! both have a `search` tool, so each tool is offered as `server__tool`
//! (the seed 004 convention), sanitized, truncated and de-duplicated; a
//! server configured with `tool_prefix = false` offers its tools under
//! their own names where those are valid and still free.

const MAX_LEN: usize = 64;

/// Assigns unique valid names to `(server, tool)` pairs, in order.
#[derive(Default)]
pub struct NameAllocator {
    taken: std::collections::HashSet<String>,
}

impl NameAllocator {
    pub fn allocate(&mut self, server: &str, tool: &str) -> String {
        let base = truncate(sanitize(&format!("{server}__{tool}")), MAX_LEN);
        let mut name = base.clone();
        let mut n = 2;
        while self.taken.contains(&name) {
            let suffix = format!("_{n}");
            name = truncate(base.clone(), MAX_LEN - suffix.len()) + &suffix;
            n += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    /// `tool` itself if it is a valid name no tool took before, else as
    /// [`NameAllocator::allocate`] names it.
    pub fn allocate_unprefixed(&mut self, server: &str, tool: &str) -> String {
        let valid = tool.len() <= MAX_LEN && sanitize(tool) == tool;
        if valid && self.taken.insert(tool.to_owned()) {
            return tool.to_owned();
        }
        self.allocate(server, tool)
    }
}

fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "tool".into()
    } else {
        cleaned
    }
}

fn truncate(mut name: String, max: usize) -> String {
    name.truncate(max);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprefixed_names_are_kept_where_valid_and_free() {
        let mut names = NameAllocator::default();
        assert_eq!(names.allocate("demo", "calculate"), "demo__calculate");
        assert_eq!(names.allocate_unprefixed("ref", "echo"), "echo");
        assert_eq!(names.allocate_unprefixed("other", "echo"), "other__echo");
        assert_eq!(
            names.allocate_unprefixed("ref", "demo__calculate"),
            "ref__demo__calculate",
            "a name taken before is not taken again"
        );
        assert_eq!(
            names.allocate_unprefixed("ref", "has space"),
            "ref__has_space"
        );
    }

    /// Whether `name` is acceptable to every provider we speak to.
    fn is_valid(name: &str) -> bool {
        (1..=MAX_LEN).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    #[test]
    fn names_are_valid_and_unique() {
        let mut names = NameAllocator::default();
        assert_eq!(names.allocate("demo", "calculate"), "demo__calculate");
        assert_eq!(
            names.allocate("my server", "get.weather"),
            "my_server__get_weather"
        );
        assert_eq!(
            names.allocate("my.server", "get weather"),
            "my_server__get_weather_2"
        );
        let long = "x".repeat(100);
        let a = names.allocate(&long, "t");
        let b = names.allocate(&long, "u");
        assert!(is_valid(&a) && is_valid(&b));
        assert_ne!(a, b);
        assert!(is_valid(&names.allocate("", "ü")));
    }
}
