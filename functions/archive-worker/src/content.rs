//! What an archive holds besides the recordings: their readable names, `manifest.json`
//! and an `index.html` that plays them offline.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shared::email::escape_html;
use shared::http::percent_encode;
use shared::store::families::Language;
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

/// The archive's folder (the family's name) at most this many bytes of UTF-8...
const FOLDER_BYTES: usize = 60;
/// ...and a recording's name (without its extension, with its uniqueness suffix) at
/// most this many: `{folder}/recordings/{name}.waveform.json`, the longest entry path,
/// stays within 240 bytes (Windows counts the folder it is unpacked into against its
/// 260), and every component within 200 (file systems allow 255).
const NAME_BYTES: usize = 240 - FOLDER_BYTES - "/recordings/".len() - ".waveform.json".len();
/// A speaker's name in a file name, at most this many bytes (the topic gets the rest).
const SPEAKER_BYTES: usize = 60;

/// A recording as the archive lists it.
pub use shared::store::archives::Item;
/// The family as the archive tells it.
pub use shared::store::families::About as Family;

/// Words of the archive, in the family's language.
struct Words {
    fallback_topic: &'static str,
    title: &'static str,
    intro: &'static str,
    by_prompt: &'static str,
    by_person: &'static str,
    no_prompt: &'static str,
    empty: &'static str,
}

fn words(language: Language) -> Words {
    match language {
        Language::Es => Words {
            fallback_topic: "Grabación",
            title: "Las voces de",
            intro: "Todas las grabaciones de la familia, para escuchar sin conexión.",
            by_prompt: "Por pregunta",
            by_person: "Por persona",
            no_prompt: "Sin pregunta",
            empty: "Todavía no hay grabaciones.",
        },
        Language::En => Words {
            fallback_topic: "Recording",
            title: "The voices of",
            intro: "Every recording of the family, to listen to offline.",
            by_prompt: "By prompt",
            by_person: "By person",
            no_prompt: "No prompt",
            empty: "No recordings yet.",
        },
    }
}

/// What a speaker is called when their account has no name.
pub fn unnamed_speaker(language: Language) -> &'static str {
    match language {
        Language::Es => "Un familiar",
        Language::En => "Family member",
    }
}

/// Whether a character never goes into a file name: path separators and their look-
/// alikes, what Windows refuses, control characters, and the bidi controls that can
/// make a name read as something else (the zero-width joiner and non-joiner stay:
/// Persian words and emoji need them).
fn unsafe_in_names(c: char) -> bool {
    matches!(
        c,
        '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|'
            | '\u{2044}' | '\u{2215}' | '\u{29F8}' | '\u{FF0F}' | '\u{FF3C}'
            | '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
    ) || c.is_control()
}

/// The longest start of `text` of at most `max` bytes, cut between characters.
fn cut(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Text made safe as one file or folder name on every system: NFC (so a name typed on
/// a Mac and one typed on Windows are the same name), no path separators or look-
/// alikes, no characters Windows refuses, no control or bidi characters, no leading
/// or trailing dots or spaces, at most `max` bytes of UTF-8 cut between characters;
/// `fallback` when nothing is left.
pub fn sanitize(text: &str, fallback: &str, max: usize) -> String {
    let cleaned: String = text
        .nfc()
        .map(|c| if unsafe_in_names(c) { ' ' } else { c })
        .collect();
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    let joined = words.join(" ");
    let name = trim_name(cut(&joined, max)).to_owned();
    let reserved = ["CON", "PRN", "AUX", "NUL"];
    let upper = name.to_uppercase();
    let device = reserved.contains(&upper.as_str())
        || ((upper.starts_with("COM") || upper.starts_with("LPT"))
            && upper.len() == 4
            && upper.ends_with(|c: char| c.is_ascii_digit()));
    if name.is_empty() {
        fallback.to_owned()
    } else if device {
        format!("{name} ({fallback})")
    } else {
        name
    }
}

/// Without leading and trailing dots and spaces (a leading dot hides a file; Windows
/// drops trailing ones).
fn trim_name(name: &str) -> &str {
    name.trim_matches(|c: char| c == '.' || c == ' ')
}

/// `2026-03-14 Grandma Rosa - What was your first job`: the day, who, and the title,
/// else the prompt, else a word for a recording.
pub fn base_name(
    recorded_at: DateTime<Utc>,
    speaker: &str,
    title: Option<&str>,
    prompt: Option<&str>,
    language: Language,
) -> String {
    let w = words(language);
    let topic = title
        .filter(|t| !t.trim().is_empty())
        .or(prompt)
        .unwrap_or(w.fallback_topic);
    let speaker = sanitize(speaker, unnamed_speaker(language), SPEAKER_BYTES);
    let topic = sanitize(topic, w.fallback_topic, NAME_BYTES);
    let name = format!("{} {speaker} - {topic}", recorded_at.format("%Y-%m-%d"));
    trim_name(cut(&name, NAME_BYTES)).to_owned()
}

/// Makes names unique as file systems compare them (after NFC, ignoring case, as macOS
/// and Windows do): the second `2026-03-14 Rosa - Recording` becomes
/// `2026-03-14 Rosa - Recording (2)`, cut shorter when the suffix needs the room.
pub fn unique(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let folded = |name: &str| -> String { name.nfc().flat_map(char::to_lowercase).collect() };
    let mut taken = HashSet::new();
    names
        .into_iter()
        .map(|name| {
            let mut candidate = name.clone();
            let mut n = 1;
            while !taken.insert(folded(&candidate)) {
                n += 1;
                let suffix = format!(" ({n})");
                let base = trim_name(cut(&name, NAME_BYTES - suffix.len()));
                candidate = format!("{base}{suffix}");
            }
            candidate
        })
        .collect()
}

/// The archive's folder in the ZIP: the family's name.
pub fn folder(family: &Family) -> String {
    let fallback = match family.language {
        Language::Es => "Familia",
        Language::En => "Family",
    };
    sanitize(&family.name, fallback, FOLDER_BYTES)
}

/// `manifest.json`: the family, its prompts, and every recording written, with where it
/// is and the SHA-256 of each file (the recording's, which its bytes were checked
/// against); those gone before they could be written, or damaged (no copy matched its
/// SHA-256), are listed apart.
pub fn manifest(
    archive_id: Uuid,
    parts: i32,
    family: &Family,
    prompts: &[(Uuid, String)],
    items: &[Item],
) -> Value {
    let sha = |s: &Option<Vec<u8>>| s.as_ref().map(hex::encode);
    let prompts: Vec<Value> = prompts
        .iter()
        .map(|(id, text)| json!({"id": id, "text": text}))
        .collect();
    let recordings: Vec<Value> = items
        .iter()
        .filter(|i| !i.missing && !i.damaged)
        .map(|i| {
            json!({
                "id": i.recording_id,
                "recordedAt": i.recorded_at,
                "durationSeconds": i.duration_seconds,
                "speaker": i.speaker,
                "title": i.title,
                "prompt": i.prompt_id.map(|id| json!({"id": id, "text": i.prompt_text})),
                "part": i.part,
                "audio": {
                    "file": i.audio_path(),
                    "sizeBytes": i.audio_size_bytes,
                    "sha256": sha(&i.audio_sha256),
                },
                "waveform": i.waveform_path().map(|file| json!({
                    "file": file,
                    "sizeBytes": i.waveform_size_bytes,
                    "sha256": sha(&i.waveform_sha256),
                })),
            })
        })
        .collect();
    let left_out: Vec<Value> = items
        .iter()
        .filter_map(|i| {
            let reason = match (i.missing, i.damaged) {
                (true, _) => "deleted while the archive was being made",
                (_, true) => "damaged: no copy of its bytes matches its SHA-256",
                _ => return None,
            };
            Some(json!({"id": i.recording_id, "reason": reason}))
        })
        .collect();
    json!({
        "format": "stories-from-the-sun/archive/1",
        "archive": {"id": archive_id, "createdAt": Utc::now(), "parts": parts},
        "family": {"id": family.id, "name": family.name, "language": family.language},
        "prompts": prompts,
        "recordings": recordings,
        "leftOut": left_out,
    })
}

/// `index.html`: every recording with a player, grouped by prompt and by person; no
/// script, no network, any browser.
pub fn index(family: &Family, items: &[Item]) -> String {
    let w = words(family.language);
    let name = escape_html(&family.name);
    let live: Vec<&Item> = items.iter().filter(|i| !i.missing && !i.damaged).collect();
    let mut by_prompt: BTreeMap<(bool, String), Vec<&Item>> = BTreeMap::new();
    let mut by_person: BTreeMap<String, Vec<&Item>> = BTreeMap::new();
    for item in &live {
        let prompt = item.prompt_text.clone().unwrap_or_default();
        // Recordings without a prompt last.
        by_prompt
            .entry((item.prompt_text.is_none(), prompt))
            .or_default()
            .push(item);
        by_person
            .entry(item.speaker.clone())
            .or_default()
            .push(item);
    }
    let mut html = format!(
        "<!doctype html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} {name}</title>\n<style>\n\
         body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;\
         padding:0 1rem;color:#222}}\n\
         h1{{font-weight:600}} h2{{margin-top:2.5rem;border-bottom:1px solid #ddd}}\n\
         h3{{margin-bottom:.5rem}} li{{margin:.75rem 0;list-style:none}}\n\
         audio{{display:block;width:100%;margin-top:.25rem}} .meta{{color:#666;font-size:.9rem}}\n\
         </style>\n</head>\n<body>\n<h1>{title} {name}</h1>\n<p>{intro}</p>\n",
        lang = family.language.as_str(),
        title = w.title,
        intro = w.intro,
    );
    if live.is_empty() {
        html.push_str(&format!("<p>{}</p>\n", w.empty));
    } else {
        html.push_str(&format!("<h2 id=\"by-prompt\">{}</h2>\n", w.by_prompt));
        for ((no_prompt, prompt), group) in &by_prompt {
            let heading = if *no_prompt {
                w.no_prompt
            } else {
                prompt.as_str()
            };
            section(&mut html, heading, group, |i| &i.speaker);
        }
        html.push_str(&format!("<h2 id=\"by-person\">{}</h2>\n", w.by_person));
        for (person, group) in &by_person {
            section(&mut html, person, group, |i| {
                i.title
                    .as_deref()
                    .or(i.prompt_text.as_deref())
                    .unwrap_or(w.fallback_topic)
            });
        }
    }
    html.push_str("</body>\n</html>\n");
    html
}

fn section<'a>(
    html: &mut String,
    heading: &str,
    items: &[&'a Item],
    label: impl Fn(&'a Item) -> &'a str,
) {
    html.push_str(&format!("<h3>{}</h3>\n<ul>\n", escape_html(heading)));
    for item in items {
        html.push_str(&format!(
            "<li data-recording=\"{id}\">{label} <span class=\"meta\">{date} · {duration}</span>\
             <audio controls preload=\"none\" src=\"{src}\"></audio></li>\n",
            id = item.recording_id,
            label = escape_html(label(item)),
            date = item.recorded_at.format("%Y-%m-%d"),
            duration = duration(item.duration_seconds),
            src = escape_html(&url_path(&item.audio_path())),
        ));
    }
    html.push_str("</ul>\n");
}

/// `m:ss`, or `h:mm:ss` past an hour.
fn duration(seconds: f64) -> String {
    let s = seconds.round().max(0.0) as u64;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", s / 60 % 60, s % 60),
    }
}

/// A relative URL for a path: each segment percent-encoded (names hold spaces, `#`, `%`).
fn url_path(path: &str) -> String {
    path.split('/')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-03-14T18:30:00Z".parse().expect("a time")
    }

    #[test]
    fn names_read_well_and_cannot_escape_their_folder() {
        let name = base_name(
            at(),
            "Grandma Rosa",
            None,
            Some("What was your first job?"),
            Language::En,
        );
        assert_eq!(name, "2026-03-14 Grandma Rosa - What was your first job");
        let hostile = base_name(
            at(),
            "../../etc",
            Some("a/b\\c:d*\u{0}e|.."),
            None,
            Language::En,
        );
        assert!(
            !hostile.contains(['/', '\\', ':', '*', '|', '\u{0}']),
            "{hostile}"
        );
        assert_eq!(hostile, "2026-03-14 etc - a b c d e");
        assert_eq!(
            base_name(at(), "  ", Some(" "), None, Language::Es),
            "2026-03-14 Un familiar - Grabación"
        );
        let long = base_name(at(), &"x".repeat(500), None, None, Language::En);
        assert!(long.len() <= NAME_BYTES, "{long}");
    }

    #[test]
    fn a_long_chinese_title_fits_every_file_system_after_any_suffix() {
        let title = "我们的家".repeat(25); // 100 characters, 300 bytes
        let family = Family {
            id: Uuid::nil(),
            name: "王".repeat(100),
            language: Language::En,
        };
        let folder = folder(&family);
        assert!(folder.len() <= FOLDER_BYTES, "{folder}");
        let names = unique(vec![
            base_name(
                at(),
                &"奶".repeat(80),
                Some(&title),
                None,
                Language::En
            );
            12
        ]);
        for name in &names {
            let path = format!("{folder}/recordings/{name}.waveform.json");
            assert!(path.len() <= 240, "{} bytes: {path}", path.len());
            assert!(path.split('/').all(|c| c.len() <= 200), "{path}");
        }
        assert!(names[11].ends_with(" (12)"), "{}", names[11]);
    }

    #[test]
    fn names_hold_no_bidi_trick_no_slash_look_alike_and_no_leading_dot() {
        let name = sanitize(
            "..\u{202E}gpj.exe\u{2215}x\u{FF0F}y\u{2066}z",
            "F",
            NAME_BYTES,
        );
        assert_eq!(name, "gpj.exe x y z");
        // Persian needs the zero-width non-joiner; emoji sequences the joiner.
        assert_eq!(
            sanitize("می\u{200C}خواهم 👩\u{200D}👧", "F", NAME_BYTES),
            "می\u{200C}خواهم 👩\u{200D}👧"
        );
    }

    #[test]
    fn names_that_differ_only_in_normalization_or_case_are_made_unique() {
        // "é" precomposed, and "e" + combining acute: the same name on disk.
        let names = ["Jos\u{e9}", "Jose\u{301}", "JOS\u{c9}"].map(|n| sanitize(n, "F", 50));
        assert_eq!(unique(names), ["José", "José (2)", "JOSÉ (3)"]);
    }

    #[test]
    fn names_are_made_unique_whatever_their_case() {
        let names = ["A", "a", "A", "B"].map(str::to_owned);
        assert_eq!(unique(names), ["A", "a (2)", "A (3)", "B"]);
    }

    #[test]
    fn windows_device_names_are_not_made() {
        assert_eq!(sanitize("con", "Family", 60), "con (Family)");
        assert_eq!(sanitize("COM1", "Family", 60), "COM1 (Family)");
        assert_eq!(sanitize("Comet", "Family", 60), "Comet");
    }

    #[test]
    fn the_index_escapes_what_people_typed_and_encodes_links() {
        let family = Family {
            id: Uuid::nil(),
            name: "<script>alert(1)</script>".into(),
            language: Language::En,
        };
        let item = Item {
            recording_id: Uuid::nil(),
            part: 1,
            position: 0,
            name: "2026-03-14 Rosa - 100% #1".into(),
            recorded_at: at(),
            duration_seconds: 3725.0,
            speaker: "Rosa".into(),
            prompt_id: None,
            prompt_text: None,
            title: Some("<b>".into()),
            audio_size_bytes: 1,
            waveform_size_bytes: None,
            audio_sha256: None,
            waveform_sha256: None,
            missing: false,
            damaged: false,
        };
        let html = index(&family, &[item]);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("recordings/2026-03-14%20Rosa%20-%20100%25%20%231.m4a"));
        assert!(html.contains("1:02:05"));
    }
}
