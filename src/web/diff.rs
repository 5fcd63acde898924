//! A line diff of two texts, for showing an edit before it is saved and for
//! the audit event that records it. Policy files are small: a longest
//! common subsequence over the lines between the common head and tail is
//! plenty (and bounded, see [`MAX_CELLS`]).

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// Above this many (old × new) changed lines, the changed middle is shown
/// as removed then added rather than aligned.
const MAX_CELLS: usize = 4_000_000;

/// Lines of `old` and `new` as kept, removed and added, in order.
pub fn line_diff<'a>(old: &'a str, new: &'a str) -> Vec<DiffLine<'a>> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut out: Vec<DiffLine> = a[..head].iter().copied().map(DiffLine::Same).collect();
    if am.len().saturating_mul(bm.len()) > MAX_CELLS {
        out.extend(am.iter().copied().map(DiffLine::Removed));
        out.extend(bm.iter().copied().map(DiffLine::Added));
    } else {
        // lcs[i][j]: the longest common subsequence of am[i..] and bm[j..].
        let w = bm.len() + 1;
        let mut lcs = vec![0u32; (am.len() + 1) * w];
        for i in (0..am.len()).rev() {
            for j in (0..bm.len()).rev() {
                lcs[i * w + j] = if am[i] == bm[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < am.len() || j < bm.len() {
            if i < am.len() && j < bm.len() && am[i] == bm[j] {
                out.push(DiffLine::Same(am[i]));
                i += 1;
                j += 1;
            } else if i < am.len() && (j == bm.len() || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])
            {
                // On a tie the removed line comes first, as diff(1) shows it.
                out.push(DiffLine::Removed(am[i]));
                i += 1;
            } else {
                out.push(DiffLine::Added(bm[j]));
                j += 1;
            }
        }
    }
    out.extend(a[a.len() - tail..].iter().copied().map(DiffLine::Same));
    out
}

/// A diff line with its line numbers in the old and new text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbered<'a> {
    pub old: Option<usize>,
    pub new: Option<usize>,
    pub line: DiffLine<'a>,
}

/// The changed lines with up to `context` unchanged lines around each
/// change; `None` separates hunks. Empty when nothing changed.
pub fn hunks<'a>(diff: &[DiffLine<'a>], context: usize) -> Vec<Option<Numbered<'a>>> {
    let mut numbered = Vec::with_capacity(diff.len());
    let (mut o, mut n) = (0, 0);
    for d in diff {
        let (old, new) = match d {
            DiffLine::Same(_) => {
                o += 1;
                n += 1;
                (Some(o), Some(n))
            }
            DiffLine::Removed(_) => {
                o += 1;
                (Some(o), None)
            }
            DiffLine::Added(_) => {
                n += 1;
                (None, Some(n))
            }
        };
        numbered.push(Numbered {
            old,
            new,
            line: d.clone(),
        });
    }
    let changed: Vec<usize> = numbered
        .iter()
        .enumerate()
        .filter(|(_, l)| !matches!(l.line, DiffLine::Same(_)))
        .map(|(i, _)| i)
        .collect();
    let keep = |i: usize| {
        changed
            .iter()
            .any(|&c| i + context >= c && i <= c + context)
    };
    let mut out = Vec::new();
    let mut last: Option<usize> = None;
    for (i, l) in numbered.into_iter().enumerate() {
        if keep(i) {
            if last.is_some_and(|p| p + 1 != i) {
                out.push(None);
            }
            out.push(Some(l));
            last = Some(i);
        }
    }
    out
}

/// A unified-style text of the changes (`-` removed, `+` added, two spaces
/// kept), with hunk headers naming the old and new line numbers; empty when
/// nothing changed.
pub fn unified(old: &str, new: &str, context: usize) -> String {
    let diff = line_diff(old, new);
    let mut out = String::new();
    let mut at_start = true;
    for h in hunks(&diff, context) {
        match h {
            None => at_start = true,
            Some(l) => {
                if at_start {
                    out.push_str(&format!(
                        "@@ line {} / {} @@\n",
                        l.old.map_or("-".into(), |x| x.to_string()),
                        l.new.map_or("-".into(), |x| x.to_string())
                    ));
                    at_start = false;
                }
                let (mark, text) = match l.line {
                    DiffLine::Same(t) => (' ', t),
                    DiffLine::Removed(t) => ('-', t),
                    DiffLine::Added(t) => ('+', t),
                };
                out.push(mark);
                out.push(' ');
                out.push_str(text);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_changed_lines() {
        let old = "a\nb\nc\nd\ne\n";
        let new = "a\nB\nc\nd\ne\nf\n";
        assert_eq!(
            line_diff(old, new),
            [
                DiffLine::Same("a"),
                DiffLine::Removed("b"),
                DiffLine::Added("B"),
                DiffLine::Same("c"),
                DiffLine::Same("d"),
                DiffLine::Same("e"),
                DiffLine::Added("f"),
            ]
        );
        assert_eq!(
            line_diff("x\ny\nz", "y\nz\nw"),
            [
                DiffLine::Removed("x"),
                DiffLine::Same("y"),
                DiffLine::Same("z"),
                DiffLine::Added("w"),
            ]
        );
        assert!(
            line_diff("same\n", "same\n")
                .iter()
                .all(|l| matches!(l, DiffLine::Same(_)))
        );
    }

    #[test]
    fn unified_text_has_context_and_line_numbers() {
        let old: String = (1..=20).map(|i| format!("l{i}\n")).collect();
        let new = old.replace("l5\n", "L5\n").replace("l18\n", "");
        assert_eq!(
            unified(&old, &new, 1),
            "@@ line 4 / 4 @@\n  l4\n- l5\n+ L5\n  l6\n@@ line 17 / 17 @@\n  l17\n- l18\n  l19\n"
        );
        assert_eq!(unified(&old, &old, 3), "");
    }
}
