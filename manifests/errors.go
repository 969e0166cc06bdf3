package manifests

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a manifest or presets file: where it is and what is wrong.
type Problem struct {
	// Line is the 1-based line in the YAML the problem refers to; 0 when there is none
	// (an empty document, or a problem found across files by MergePresets).
	Line int
	// Path is the YAML path of the offending value, such as "spec.presets[1].styleWeight";
	// empty for problems with the document as a whole.
	Path string
	// Msg says what is wrong, without the line or path.
	Msg string
}

// Error formats the problem as "line 12: spec.presets[1].styleWeight: -3 must be >= 0",
// leaving out the line or path when it has none.
func (p *Problem) Error() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is what Load, Parse, LoadPresets and MergePresets return when the input is invalid:
// the problems found, ordered by line (problems without a line last). It is never empty.
// Use errors.As to get it, or to get the first *Problem.
//
// A document can hold more problems than anyone reads (a million bad presets): at most
// MaxProblems are kept, and Omitted counts the others found; Error prints only the first
// PrintedProblems.
type Error struct {
	Problems []*Problem
	// Omitted is the number of further problems found but not kept.
	Omitted int
}

// Bounds on the problems of one Error.
const (
	// MaxProblems is how many problems a manifest's Error keeps.
	MaxProblems = 1000
	// PrintedProblems is how many problems Error's message lists before a count of the rest.
	PrintedProblems = 20
)

// Error lists the first PrintedProblems problems one per line, then how many more there are.
func (e *Error) Error() string {
	n := min(len(e.Problems), PrintedProblems)
	msgs := make([]string, n, n+1)
	for i, p := range e.Problems[:n] {
		msgs[i] = p.Error()
	}
	if rest := len(e.Problems) - n + e.Omitted; rest > 0 {
		msgs = append(msgs, fmt.Sprintf("... and %d more problems", rest))
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the problems, so errors.As finds a *Problem.
func (e *Error) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// problems collects Problems; lines maps YAML paths to the line they were found on, so a
// problem found after decoding can name its line.
type problems struct {
	list  []*Problem
	lines map[string]int
	// bad holds paths that failed to decode; later problems at or under them are noise.
	bad []string
	// omitted counts problems past MaxProblems, not kept.
	omitted int
}

func newProblems() *problems { return &problems{lines: map[string]int{}} }

// at records a problem at an explicit line.
func (ps *problems) at(line int, path, format string, args ...any) {
	if len(ps.list) >= MaxProblems {
		ps.omitted++
		return
	}
	ps.list = append(ps.list, &Problem{Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// decodeErr records a problem that left path undecoded.
func (ps *problems) decodeErr(line int, path, format string, args ...any) {
	ps.at(line, path, format, args...)
	if len(ps.bad) < MaxProblems {
		ps.bad = append(ps.bad, path)
	}
}

// add records a problem found after decoding, at the line of path or of its nearest
// recorded ancestor. It is dropped if path is under a value that failed to decode.
func (ps *problems) add(path, format string, args ...any) {
	for _, b := range ps.bad {
		if under(path, b) {
			return
		}
	}
	ps.at(ps.line(path), path, format, args...)
}

// line returns the line path was found on, or that of its nearest ancestor (the document
// root is ""), or 0.
func (ps *problems) line(path string) int {
	for p := path; ; p = parent(p) {
		if l, ok := ps.lines[p]; ok {
			return l
		}
		if p == "" {
			return 0
		}
	}
}

// err returns nil or an *Error holding the problems sorted by line.
func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	list := append([]*Problem(nil), ps.list...)
	sort.SliceStable(list, func(i, j int) bool {
		li, lj := list[i].Line, list[j].Line
		if li == 0 || lj == 0 {
			return lj == 0 && li != 0
		}
		return li < lj
	})
	return &Error{Problems: list, Omitted: ps.omitted}
}

// under reports whether path is anc or lies below it.
func under(path, anc string) bool {
	if anc == "" || path == anc {
		return true
	}
	return strings.HasPrefix(path, anc) && (path[len(anc)] == '.' || path[len(anc)] == '[')
}

// parent returns the path of the value holding path: "a.b[2]" -> "a.b" -> "a" -> "".
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// child joins a path and a field name.
func child(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// index joins a path and a sequence index.
func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }
