//! Reading a server's paginated lists (tools, resources, resource
//! templates, prompts) whole, within caps: a server that lists without end
//! or in gigabytes is refused rather than kept in memory.

use std::future::Future;

use rmcp::model::Cursor;
use serde::Serialize;

/// Most a server may list of one kind: more pages, items or bytes of them
/// is refused.
const MAX_PAGES: usize = 100;
const MAX_ITEMS: usize = 1000;
const MAX_BYTES: usize = 8 << 20;

/// One page: its items and the cursor of the next, if any.
pub type Page<T> = (Vec<T>, Option<Cursor>);

/// Every page of `what` (`"tools"`, `"prompts"`…), fetched by `page` from
/// the cursor it is given, within the caps.
pub async fn all_pages<T, F, Fut>(what: &str, mut page: F) -> Result<Vec<T>, String>
where
    T: Serialize,
    F: FnMut(Option<Cursor>) -> Fut,
    Fut: Future<Output = Result<Page<T>, rmcp::ServiceError>>,
{
    let mut items = Vec::new();
    let mut bytes = ByteCount(0);
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let (listed, next) = page(cursor)
            .await
            .map_err(|e| format!("listing its {what} failed: {e}"))?;
        serde_json::to_writer(&mut bytes, &listed).map_err(|e| e.to_string())?;
        items.extend(listed);
        if items.len() > MAX_ITEMS {
            return Err(format!(
                "it lists more than {MAX_ITEMS} {what}, which is more than a client can be offered"
            ));
        }
        if bytes.0 > MAX_BYTES {
            return Err(format!(
                "its list of {what} is larger than {} MiB",
                MAX_BYTES >> 20
            ));
        }
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(items),
        }
    }
    Err(format!(
        "it lists its {what} in more than {MAX_PAGES} pages"
    ))
}

/// Measures serialized JSON without keeping it.
pub struct ByteCount(pub usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_are_followed_to_the_end_and_an_endless_list_is_refused() {
        let listed = all_pages("prompts", |cursor| async move {
            Ok(match cursor.as_deref() {
                None => (vec![1], Some("2".to_owned())),
                _ => (vec![2], None),
            })
        })
        .await;
        assert_eq!(listed, Ok(vec![1, 2]));

        let endless = all_pages("prompts", |_| async {
            Ok((vec![0], Some("again".to_owned())))
        })
        .await;
        assert_eq!(
            endless,
            Err("it lists its prompts in more than 100 pages".to_owned())
        );
    }
}
