//! `FILE:LINE` in a Node process: which scripts it names (by path suffix, or through a
//! source map for TypeScript), the V8 breakpoints that capture there, and their removal.

use chromiumoxide_cdp::cdp::js_protocol::debugger::{
    GetPossibleBreakpointsParams, GetScriptSourceParams, Location, RemoveBreakpointParams,
    SetBreakpointByUrlParams,
};

use super::{
    cdp::{CdpSession, Script},
    scope::ScopeName,
    sourcemap, NodeError,
};

/// File extensions a Node breakpoint location may have.
pub const EXTENSIONS: &[&str] = &["js", "mjs", "cjs", "ts", "mts", "cts", "jsx", "tsx"];

/// How many lines around a line without code are searched for ones with code.
const NEAR_LINES: i64 = 8;

/// `FILE:LINE` when FILE is JavaScript or TypeScript.
pub fn parse_location(location: &str) -> Option<(&str, u32)> {
    let (file, line) = location.rsplit_once(':')?;
    let line: u32 = line.parse().ok()?;
    let ext = file.rsplit_once('.')?.1;
    (line > 0 && EXTENSIONS.contains(&ext)).then_some((file, line))
}

/// One V8 breakpoint of a Tracery breakpoint.
#[derive(Clone, Debug)]
pub struct V8Breakpoint {
    /// V8's id, for `Debugger.removeBreakpoint`.
    pub id: String,
    /// The script URL it is set on.
    pub url: String,
    /// 1-based line in the script V8 runs (the generated line for a source-mapped file).
    pub line: u32,
    /// The condition, kept to verify the removal.
    pub condition: String,
}

/// Where `file:line` is in the scripts of a session.
#[derive(Clone, Debug)]
pub struct Site {
    /// The script.
    pub script: Script,
    /// 1-based line in that script.
    pub line: u32,
    /// The source the user named (the script itself, or the original of a source map).
    pub source_path: String,
}

/// True when `url` names `file`: equal, or ending in `/file` (a path suffix).
fn url_matches(url: &str, file: &str) -> bool {
    let path = url.strip_prefix("file://").unwrap_or(url);
    let file = file.trim_start_matches("./");
    path == file || path.ends_with(&format!("/{file}"))
}

/// The sites of `file:line` among the session's scripts.
pub async fn sites(
    session: &CdpSession,
    pid: u32,
    file: &str,
    line: u32,
) -> Result<Vec<Site>, NodeError> {
    let scripts = session.scripts();
    let mut out: Vec<Site> = scripts
        .iter()
        .filter(|s| url_matches(&s.url, file))
        .map(|s| Site {
            script: s.clone(),
            line,
            source_path: s.url.strip_prefix("file://").unwrap_or(&s.url).to_owned(),
        })
        .collect();
    if out.is_empty() {
        for s in scripts.iter().filter(|s| s.source_map_url.is_some()) {
            if let Some((source, generated)) = sourcemap::generated_line(pid, s, file, line) {
                out.push(Site {
                    script: s.clone(),
                    line: generated,
                    source_path: source,
                });
            }
        }
    }
    if out.is_empty() {
        return Err(NodeError::NoScript {
            pid,
            file: file.to_owned(),
            similar: similar_urls(&scripts, file),
        });
    }
    Ok(out)
}

/// Up to five script URLs that look like `file`: the same file name first, then the
/// application's scripts (Node's own `node:` modules left out).
fn similar_urls(scripts: &[Script], file: &str) -> Vec<String> {
    let base = file.rsplit('/').next().unwrap_or(file);
    let stem = base.split('.').next().unwrap_or(base);
    let mut apps: Vec<&str> = scripts
        .iter()
        .map(|s| s.url.as_str())
        .filter(|u| !u.starts_with("node:") && !u.is_empty() && !u.contains("/node_modules/"))
        .collect();
    apps.sort_by_key(|u| {
        let name = u.rsplit('/').next().unwrap_or(u);
        (name != base, !name.contains(stem), u.len())
    });
    apps.dedup();
    apps.into_iter().take(5).map(str::to_owned).collect()
}

/// The names in scope at `site`, read from the script's source (or nothing for a
/// source-mapped site, whose generated names the scanner reads all the same).
pub async fn scope_names(session: &CdpSession, site: &Site) -> Result<Vec<ScopeName>, NodeError> {
    let src = session
        .call(GetScriptSourceParams::new(site.script.id.clone()))
        .await?
        .script_source;
    Ok(super::scope::names_at(&src, site.line))
}

/// Sets a capturing breakpoint at `site`; fails, listing nearby lines with code, when V8
/// finds no code on that line.
pub async fn set(
    session: &CdpSession,
    pid: u32,
    site: &Site,
    condition: String,
) -> Result<V8Breakpoint, NodeError> {
    let mut params = SetBreakpointByUrlParams::new(i64::from(site.line) - 1);
    params.url = Some(site.script.url.clone());
    params.condition = Some(condition.clone());
    let set = session.call(params).await?;
    let on_line = set.locations.iter().any(|l| {
        l.line_number == i64::from(site.line) - 1 && l.script_id.inner() == &site.script.id
    });
    let bp = V8Breakpoint {
        id: set.breakpoint_id.inner().clone(),
        url: site.script.url.clone(),
        line: site.line,
        condition,
    };
    if !on_line {
        // V8 moved it to the next line with code: not what the user asked for.
        remove(session, &bp).await?;
        return Err(NodeError::NoCode {
            pid,
            file: site.source_path.clone(),
            line: site.line,
            nearest: lines_with_code(session, site).await?,
        });
    }
    Ok(bp)
}

/// Lines near `site` where V8 can break, nearest first (at most four).
async fn lines_with_code(session: &CdpSession, site: &Site) -> Result<Vec<u32>, NodeError> {
    let line = i64::from(site.line) - 1;
    let mut start = Location::new(site.script.id.clone(), (line - NEAR_LINES).max(0));
    start.column_number = Some(0);
    let mut end = Location::new(site.script.id.clone(), line + NEAR_LINES + 1);
    end.column_number = Some(0);
    let mut params = GetPossibleBreakpointsParams::new(start);
    params.end = Some(end);
    let found = session.call(params).await?;
    let mut lines: Vec<u32> = found
        .locations
        .iter()
        .filter_map(|l| u32::try_from(l.line_number + 1).ok())
        .collect();
    lines.sort_by_key(|l| (l.abs_diff(site.line), *l));
    lines.dedup();
    lines.truncate(4);
    lines.sort_unstable();
    Ok(lines)
}

/// Sets `bp` again, where it was, after [`remove`]: returns its new V8 id.
pub async fn set_again(session: &CdpSession, bp: &V8Breakpoint) -> Result<String, NodeError> {
    let mut params = SetBreakpointByUrlParams::new(i64::from(bp.line) - 1);
    params.url = Some(bp.url.clone());
    params.condition = Some(bp.condition.clone());
    let set = session.call(params).await?;
    Ok(set.breakpoint_id.inner().clone())
}

/// Removes a V8 breakpoint.
pub async fn remove(session: &CdpSession, bp: &V8Breakpoint) -> Result<(), NodeError> {
    session
        .call(RemoveBreakpointParams::new(bp.id.clone()))
        .await
        .map(drop)
}

/// True when this session still has a breakpoint at `bp`'s place: V8 refuses a second
/// breakpoint at the same URL and line, so a probe one is set and removed at once.
pub async fn still_set(session: &CdpSession, bp: &V8Breakpoint) -> Result<bool, NodeError> {
    let mut params = SetBreakpointByUrlParams::new(i64::from(bp.line) - 1);
    params.url = Some(bp.url.clone());
    params.condition = Some(bp.condition.clone());
    match session.call(params).await {
        Ok(probe) => {
            session
                .call(RemoveBreakpointParams::new(probe.breakpoint_id))
                .await?;
            Ok(false)
        }
        Err(NodeError::Protocol { reason, .. }) if reason.contains("already exists") => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_suffixes() {
        assert_eq!(parse_location("src/app.js:12"), Some(("src/app.js", 12)));
        assert_eq!(parse_location("svc.ts:3"), Some(("svc.ts", 3)));
        assert_eq!(parse_location("orders.c:12"), None);
        assert_eq!(parse_location("main::run"), None);
        assert!(url_matches("file:///srv/app/src/app.js", "src/app.js"));
        assert!(url_matches(
            "file:///srv/app/src/app.js",
            "/srv/app/src/app.js"
        ));
        assert!(!url_matches("file:///srv/app/src/myapp.js", "app.js"));
    }

    #[test]
    fn similar_urls_put_the_same_file_name_first() {
        let s = |url: &str| Script {
            id: "1".into(),
            url: url.into(),
            source_map_url: None,
        };
        let scripts = [
            s("node:internal/main"),
            s("file:///srv/lib/util.js"),
            s("file:///srv/server.js"),
            s("file:///srv/old/server.js"),
        ];
        assert_eq!(
            similar_urls(&scripts, "app/server.js"),
            vec![
                "file:///srv/server.js".to_owned(),
                "file:///srv/old/server.js".into(),
                "file:///srv/lib/util.js".into()
            ]
        );
    }
}
