//! The web pages: `/`, `/jobs`, and the `/logs/` and `/items/` file trees.
//! ScrapydWeb and Gerapy parse these with regular expressions, so their
//! shapes (one cell per line, the row classes, the listing title) are part
//! of the contract. Every value is HTML-escaped.

use std::fmt::Write;
use std::path::{Component, Path, PathBuf};

use std::sync::Arc;

use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::listing::{self, ListingFormat};
use super::{HttpResponse, base_path, body, response};
use crate::clock;
use crate::daemon::Daemon;
use crate::store::{JobState, JobView};

/// `&`, `<`, `>`, `"` and `'` escaped, as Python's `html.escape`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(character),
        }
    }
    out
}

fn is_read<B>(request: &Request<B>) -> bool {
    request.method() == Method::GET || request.method() == Method::HEAD
}

const STYLE: &str = "body { font-family: system-ui, sans-serif; }\n\
    table { border-collapse: collapse; }\n\
    th, td { border: 1px solid #999; padding: .4rem; }\n\
    td:nth-child(2), td:nth-child(3) { word-break: break-all; }";

fn page(title: &str, body: &str) -> String {
    let (head, tail) = page_parts(title);
    format!("{head}{body}{tail}")
}

/// What comes before and after a page's body.
fn page_parts(title: &str) -> (String, &'static str) {
    (
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n"
        ),
        "</body>\n</html>\n",
    )
}

/// `/`: links to the other pages and the list of projects.
pub fn home<B>(daemon: &Daemon, request: &Request<B>) -> HttpResponse {
    if !is_read(request) {
        return response::method_not_allowed();
    }
    let base = escape(&base_path(daemon, request));
    let mut body = String::from("<h1>scrapyd-rs</h1>\n<ul>\n");
    let _ = writeln!(body, "<li><a href=\"{base}/jobs\">Jobs</a></li>");
    if daemon.config.local_items_dir().is_some() {
        let _ = writeln!(body, "<li><a href=\"{base}/items/\">Items</a></li>");
    }
    if daemon.config.logs_dir.is_some() {
        let _ = writeln!(body, "<li><a href=\"{base}/logs/\">Logs</a></li>");
    }
    body.push_str("</ul>\n");
    match daemon.project_names() {
        Ok(projects) if !projects.is_empty() => {
            body.push_str("<p>Scrapy projects:</p>\n<ul>\n");
            for project in projects {
                let _ = writeln!(body, "<li>{}</li>", escape(&project));
            }
            body.push_str("</ul>\n");
        }
        Ok(_) => body.push_str("<p>No Scrapy projects yet.</p>\n"),
        Err(error) => {
            let _ = writeln!(
                body,
                "<p>Projects cannot be read: {}</p>",
                escape(&error.to_string())
            );
        }
    }
    body.push_str(
        "<p>This page is for monitoring. Upload projects and schedule crawls with the API, for example:</p>\n\
         <p><code>curl http://localhost:6800/schedule.json -d project=default -d spider=somespider</code></p>\n",
    );
    response::html(StatusCode::OK, page("Scrapyd", &body))
}

/// `/jobs`: pending, running and finished jobs in one table, from one
/// snapshot (spooled as `listjobs.json` is). Each job row is a bare `<tr>`
/// with one `<td>` per line, which is what ScrapydWeb's regular
/// expression reads.
pub async fn jobs<B>(daemon: &Arc<Daemon>, request: &Request<B>) -> HttpResponse {
    if !is_read(request) {
        return response::method_not_allowed();
    }
    let listing = match daemon.list_jobs(None) {
        Ok(listing) => listing,
        Err(error) => {
            return response::html(
                StatusCode::INTERNAL_SERVER_ERROR,
                page(
                    "Scrapyd",
                    &format!("<p>{}</p>\n", escape(&error.to_string())),
                ),
            );
        }
    };
    let format = JobsPage {
        base: escape(&base_path(daemon, request)),
        show_items: daemon.config.local_items_dir().is_some(),
        can_cancel: !daemon.config.disabled_services.contains("cancel.json"),
        now: clock::now(),
    };
    let spooled = match listing::spool(Arc::clone(daemon), listing, format).await {
        Ok(spooled) => spooled,
        Err(error) => {
            return response::html(
                StatusCode::INTERNAL_SERVER_ERROR,
                page("Scrapyd", &format!("<p>{}</p>\n", escape(&error))),
            );
        }
    };
    let (body, length) = spooled.into_answer(request.method());
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CONTENT_LENGTH, length)
        .body(body)
        .unwrap_or_default()
}

/// The `/jobs` page as a [`ListingFormat`]; `base` is escaped already.
struct JobsPage {
    base: String,
    show_items: bool,
    can_cancel: bool,
    now: f64,
}

impl JobsPage {
    fn columns(&self) -> usize {
        8 + usize::from(self.show_items) + usize::from(self.can_cancel)
    }
}

const SECTION_TITLES: [&str; 3] = ["Pending", "Running", "Finished"];

impl ListingFormat for JobsPage {
    fn head(&mut self, out: &mut String) {
        let (head, _) = page_parts("Scrapyd");
        out.push_str(&head);
        let _ = write!(
            out,
            "<h1>Jobs</h1>\n<p><a href=\"{}/\">Go up</a></p>\n<table id=\"jobs\">\n<thead>\n<tr>\n",
            self.base
        );
        let mut headers = vec![
            "Project", "Spider", "Job", "PID", "Start", "Runtime", "Finish", "Log",
        ];
        if self.show_items {
            headers.push("Items");
        }
        if self.can_cancel {
            headers.push("Cancel");
        }
        for header in headers {
            let _ = writeln!(out, "<th>{header}</th>");
        }
        out.push_str("</tr>\n</thead>\n");
    }

    fn section_start(&mut self, section: usize, out: &mut String) {
        let _ = write!(
            out,
            "<tbody>\n<tr>\n<th colspan=\"{}\">{}</th>\n</tr>\n",
            self.columns(),
            SECTION_TITLES[section]
        );
    }

    fn row(
        &mut self,
        daemon: &Daemon,
        section: usize,
        job: &JobView,
        _first: bool,
        out: &mut String,
    ) {
        // A job that has not started has no files of its own yet (two
        // file lookups spared per row of a long queue).
        let (log, items) = if section == 0 {
            (None, None)
        } else {
            daemon.job_files(job.project, job.spider, job.job_id)
        };
        let (project, spider, job_id) =
            (escape(job.project), escape(job.spider), escape(job.job_id));
        let link = |exists: bool, root: &str, extension: &str, label: &str| {
            if exists {
                format!(
                    "<a href=\"{}/{root}/{project}/{spider}/{job_id}.{extension}\">{label}</a>",
                    self.base
                )
            } else {
                String::new()
            }
        };
        let finished = job.state == JobState::Finished;
        // A job being launched has no process yet: not started to Scrapyd.
        let start = job.start_time.filter(|_| finished || job.pid.is_some());
        let end = job.end_time;
        let pid = match (job.state, job.pid) {
            (JobState::Running, Some(pid)) => pid.to_string(),
            _ => String::new(),
        };
        let runtime = match (start, end) {
            (Some(s), Some(e)) => clock::format_runtime(e - s),
            (Some(s), None) => clock::format_runtime(self.now - s),
            _ => String::new(),
        };
        let mut cells = vec![
            project.clone(),
            spider.clone(),
            job_id.clone(),
            pid,
            start.map(clock::format_seconds).unwrap_or_default(),
            runtime,
            end.map(clock::format_seconds).unwrap_or_default(),
            link(log.is_some(), "logs", "log", "Log"),
        ];
        if self.show_items {
            cells.push(link(items.is_some(), "items", "jl", "Items"));
        }
        if self.can_cancel {
            cells.push(if finished {
                String::new()
            } else {
                format!(
                    "<form method=\"post\" action=\"{}/cancel.json\" onsubmit=\"return confirm('Cancel this job?');\">\
                     <input type=\"hidden\" name=\"project\" value=\"{project}\">\
                     <input type=\"hidden\" name=\"job\" value=\"{job_id}\">\
                     <input type=\"submit\" value=\"Cancel\"></form>",
                    self.base
                )
            });
        }
        out.push_str("<tr>\n");
        for cell in cells {
            let _ = writeln!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>\n");
    }

    fn section_end(&mut self, _section: usize, out: &mut String) {
        out.push_str("</tbody>\n");
    }

    fn tail(&mut self, out: &mut String) {
        out.push_str("</table>\n");
        out.push_str(page_parts("Scrapyd").1);
    }
}

/// `/logs/…` and `/items/…`: files with `Range` support, folders as
/// Twisted-style listings.
pub async fn files<B>(
    daemon: &Daemon,
    request: &Request<B>,
    root: &str,
    rest: &str,
) -> HttpResponse {
    if !is_read(request) {
        return response::method_not_allowed();
    }
    let folder = match root {
        "logs" => daemon.config.logs_dir.clone(),
        _ => daemon.config.local_items_dir().map(Path::to_path_buf),
    };
    let Some(folder) = folder else {
        return response::not_found();
    };
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8_lossy()
        .into_owned();
    let Some(path) = confined(&folder, &decoded) else {
        return response::not_found();
    };
    let Ok(metadata) = tokio::fs::metadata(&path).await else {
        return response::not_found();
    };
    let url_path = format!("/{root}{decoded}");
    if metadata.is_dir() {
        if !url_path.ends_with('/') {
            let location = format!("{}{}/", base_path(daemon, request), request.uri().path());
            return Response::builder()
                .status(StatusCode::FOUND)
                .header(header::LOCATION, location)
                .body(body::empty())
                .unwrap_or_default();
        }
        return directory_listing(&path, &url_path).await;
    }
    serve_file(request, &path, metadata.len(), metadata.modified().ok()).await
}

/// `rest` (the URL path below the root) as a path inside `folder`, or
/// `None` if it would leave it.
fn confined(folder: &Path, rest: &str) -> Option<PathBuf> {
    let mut path = folder.to_path_buf();
    for component in Path::new(rest).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    if rest.contains('\0') {
        return None;
    }
    Some(path)
}

/// A content type and encoding from the file name, with plain text as the
/// default (logs and `.jl` feeds are text).
fn content_type(name: &str) -> (&'static str, Option<&'static str>) {
    let (stem, encoding) = match name.strip_suffix(".gz") {
        Some(stem) => (stem, Some("gzip")),
        None => match name.strip_suffix(".bz2") {
            Some(stem) => (stem, Some("bzip2")),
            None => (name, None),
        },
    };
    let extension = stem
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let mime = match extension.as_str() {
        "json" => "application/json",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" => "text/javascript",
        "xml" => "application/xml",
        "csv" => "text/csv",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "pdf" => "application/pdf",
        _ => "text/plain",
    };
    (mime, encoding)
}

/// Size as Twisted's listings print it: `123B`, `4K`, `5M`, `1G`.
fn format_size(size: u64) -> String {
    match size {
        s if s < 1024 => format!("{s}B"),
        s if s < 1024 * 1024 => format!("{}K", s / 1024),
        s if s < 1024 * 1024 * 1024 => format!("{}M", s / (1024 * 1024)),
        s => format!("{}G", s / (1024 * 1024 * 1024)),
    }
}

async fn directory_listing(path: &Path, url_path: &str) -> HttpResponse {
    let mut folders = Vec::new();
    let mut files = Vec::new();
    if let Ok(mut entries) = tokio::fs::read_dir(path).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Ok(metadata) = entry.metadata().await else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            let modified = metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| clock::format_minutes(d.as_secs_f64()))
                .unwrap_or_default();
            if metadata.is_dir() {
                folders.push((name, modified));
            } else {
                files.push((name, modified, metadata.len()));
            }
        }
    }
    folders.sort();
    files.sort();
    let href = |name: &str| {
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .replace("%2E", ".")
            .replace("%2D", "-")
            .replace("%5F", "_")
    };
    let mut rows = String::new();
    let classes = ["odd", "even"].iter().cycle();
    let folder_rows = folders.iter().map(|(name, modified)| {
        (
            format!("{}/", href(name)),
            format!("{}/", escape(name)),
            String::new(),
            modified.clone(),
            "[Directory]".to_string(),
            String::new(),
        )
    });
    let file_rows = files.iter().map(|(name, modified, size)| {
        let (mime, encoding) = content_type(name);
        (
            href(name),
            escape(name),
            format_size(*size),
            modified.clone(),
            format!("[{mime}]"),
            encoding.map(|e| format!("[{e}]")).unwrap_or_default(),
        )
    });
    for ((link, text, size, modified, kind, encoding), class) in
        folder_rows.chain(file_rows).zip(classes)
    {
        let _ = write!(
            rows,
            "<tr class=\"{class}\">\n    <td><a href=\"{link}\">{text}</a></td>\n    <td>{size}</td>\n    \
             <td>{modified}</td>\n    <td>{kind}</td>\n    <td>{encoding}</td>\n</tr>\n"
        );
    }
    let title = format!("Directory listing for {}", escape(url_path));
    let body = format!(
        "<h1>{title}</h1>\n<table>\n<thead>\n<tr>\n<th>Filename</th>\n<th>Size</th>\n<th>Last modified</th>\n\
         <th>Content type</th>\n<th>Content encoding</th>\n</tr>\n</thead>\n<tbody>\n{rows}</tbody>\n</table>\n"
    );
    response::html(StatusCode::OK, page(&title, &body))
}

/// A byte range asked for with `Range: bytes=…`, resolved against `size`.
#[derive(Debug, PartialEq)]
enum ByteRange {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

fn parse_range(header: Option<&HeaderValue>, size: u64) -> ByteRange {
    let Some(spec) = header
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().strip_prefix("bytes="))
    else {
        return ByteRange::Whole;
    };
    // Several ranges at once are allowed to be answered whole.
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // A suffix: the last N bytes.
        return match last.parse::<u64>() {
            Ok(0) => ByteRange::Unsatisfiable,
            Ok(count) if size > 0 => ByteRange::Part(size.saturating_sub(count), size - 1),
            Ok(_) => ByteRange::Unsatisfiable,
            Err(_) => ByteRange::Whole,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return ByteRange::Whole;
    };
    let end = if last.is_empty() {
        size.saturating_sub(1)
    } else {
        match last.parse::<u64>() {
            // A range that ends before it starts is no range (RFC 9110):
            // the whole file, as Twisted serves it.
            Ok(end) if end < start => return ByteRange::Whole,
            Ok(end) => end.min(size.saturating_sub(1)),
            Err(_) => return ByteRange::Whole,
        }
    };
    if start >= size || start > end {
        ByteRange::Unsatisfiable
    } else {
        ByteRange::Part(start, end)
    }
}

/// Whether the client's copy (`If-Modified-Since`) is as new as a file
/// last changed at `modified`, compared to the second as HTTP dates go.
fn unmodified_since<B>(request: &Request<B>, modified: std::time::SystemTime) -> bool {
    let Some(since) = request
        .headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| httpdate::parse_http_date(value.trim()).ok())
    else {
        return false;
    };
    let seconds = |time: std::time::SystemTime| {
        time.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())
    };
    seconds(modified) <= seconds(since)
}

async fn serve_file<B>(
    request: &Request<B>,
    path: &Path,
    size: u64,
    modified: Option<std::time::SystemTime>,
) -> HttpResponse {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (mime, encoding) = content_type(&name);
    let last_modified = modified.map(httpdate::fmt_http_date);
    // As Twisted's static files: a client with this version gets a 304.
    if let Some(modified) = modified
        && unmodified_since(request, modified)
    {
        let mut builder = Response::builder().status(StatusCode::NOT_MODIFIED);
        if let Some(date) = &last_modified {
            builder = builder.header(header::LAST_MODIFIED, date);
        }
        return builder.body(body::empty()).unwrap_or_default();
    }
    let range = parse_range(request.headers().get(header::RANGE), size);
    let (status, start, length) = match range {
        ByteRange::Whole => (StatusCode::OK, 0, size),
        ByteRange::Part(start, end) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        ByteRange::Unsatisfiable => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_TYPE, mime)
                .header(header::ACCEPT_RANGES, "bytes")
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(body::empty())
                .unwrap_or_default();
        }
    };
    let body = if request.method() == Method::HEAD {
        body::empty()
    } else {
        let Ok(file) = tokio::fs::File::open(path).await else {
            return response::not_found();
        };
        body::file_range(file, start, length)
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, mime)
        .header(header::ACCEPT_RANGES, "bytes");
    if let Some(encoding) = encoding {
        builder = builder.header(header::CONTENT_ENCODING, encoding);
    }
    if let Some(date) = &last_modified {
        builder = builder.header(header::LAST_MODIFIED, date);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + length - 1),
        );
    }
    // The length is known: a client sees a cut file as cut.
    builder
        .header(header::CONTENT_LENGTH, length)
        .body(body)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_python() {
        assert_eq!(
            escape("<b>\"x\" & 'y'</b>"),
            "&lt;b&gt;&quot;x&quot; &amp; &#x27;y&#x27;&lt;/b&gt;"
        );
    }

    #[test]
    fn ranges() {
        let value = |text: &'static str| HeaderValue::from_static(text);
        assert_eq!(parse_range(None, 100), ByteRange::Whole);
        assert_eq!(
            parse_range(Some(&value("bytes=0-9")), 100),
            ByteRange::Part(0, 9)
        );
        assert_eq!(
            parse_range(Some(&value("bytes=90-")), 100),
            ByteRange::Part(90, 99)
        );
        assert_eq!(
            parse_range(Some(&value("bytes=-10")), 100),
            ByteRange::Part(90, 99)
        );
        assert_eq!(
            parse_range(Some(&value("bytes=-1000")), 100),
            ByteRange::Part(0, 99)
        );
        assert_eq!(
            parse_range(Some(&value("bytes=50-1000")), 100),
            ByteRange::Part(50, 99)
        );
        assert_eq!(
            parse_range(Some(&value("bytes=100-")), 100),
            ByteRange::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some(&value("bytes=0-1,5-6")), 100),
            ByteRange::Whole
        );
        // Ending before it starts: no range at all.
        assert_eq!(
            parse_range(Some(&value("bytes=5-2")), 100),
            ByteRange::Whole
        );
    }

    #[test]
    fn sizes_like_twisted() {
        assert_eq!(format_size(123), "123B");
        assert_eq!(format_size(4 * 1024 + 10), "4K");
        assert_eq!(format_size(5 * 1024 * 1024), "5M");
    }

    #[test]
    fn paths_stay_inside() {
        let root = Path::new("/srv/logs");
        assert_eq!(
            confined(root, "/p/s/j.log"),
            Some(PathBuf::from("/srv/logs/p/s/j.log"))
        );
        assert_eq!(confined(root, "/p/../../etc/passwd"), None);
        assert_eq!(confined(root, "/"), Some(PathBuf::from("/srv/logs")));
    }
}
