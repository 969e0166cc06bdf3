package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxNodes bounds the YAML nodes one document may expand to, aliases included, so a
// "billion laughs" document fails fast instead of exhausting memory.
const maxNodes = 100_000

// decoder decodes a yaml.Node tree into Go values strictly: unknown fields, duplicate keys and
// values of the wrong type are problems naming their YAML path and line. It records the line
// of every path it visits in ps.lines. Scalars are converted by yaml.v3 itself, so values
// agree with yaml.v3's strict decoder; where they differ, the decoder is the stricter (it
// refuses a fractional number for an integer, and null as a style-layer weight).
type decoder struct {
	ps     *problems
	budget int // nodes left to visit
}

var styleLayersType = reflect.TypeFor[StyleLayers]()

// readDocument parses data as exactly one YAML document and returns its root node, or nil
// after recording why not.
func readDocument(data []byte, ps *problems, what string) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			ps.at(0, "", "the %s is empty", what)
		} else {
			syntaxProblem(ps, err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		syntaxProblem(ps, err)
		return nil
	default:
		ps.at(extra.Line, "", "the %s must be one YAML document, found another", what)
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		ps.at(doc.Line, "", "the %s is empty", what)
		return nil
	}
	return doc.Content[0]
}

var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxProblem turns a yaml.v3 parse error ("yaml: line 3: did not find expected key")
// into a Problem.
func syntaxProblem(ps *problems, err error) {
	msg := err.Error()
	if m := syntaxLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		ps.at(line, "", "invalid YAML: %s", m[2])
		return
	}
	ps.at(0, "", "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

// strictCheck decodes data again with yaml.v3's own strict decoder (KnownFields) into a value
// of out's type and records whatever it refuses. After decoder found no problem it should find
// none either; it is a safety net, not the source of the values.
func strictCheck(data []byte, out any, ps *problems) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	fresh := reflect.New(reflect.TypeOf(out).Elem()).Interface()
	err := dec.Decode(fresh)
	if err == nil {
		return
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		syntaxProblem(ps, err)
		return
	}
	for _, msg := range te.Errors {
		if m := syntaxLine.FindStringSubmatch("yaml: " + msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			ps.at(line, "", "%s", m[2])
		} else {
			ps.at(0, "", "%s", msg)
		}
	}
}

// decode decodes n into v, which must be settable. A null leaves v as it is.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n = d.resolve(n, path); n == nil || isNull(n) {
		return
	}
	if _, ok := d.ps.lines[path]; !ok {
		d.ps.lines[path] = n.Line
	}
	if v.Type() == styleLayersType {
		v.Set(reflect.ValueOf(d.styleLayers(n, path)))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		before := len(d.ps.list)
		d.decode(n, e.Elem(), path)
		if len(d.ps.list) == before {
			v.Set(e)
		}
	case reflect.Struct:
		d.structure(n, v, path)
	case reflect.Slice:
		d.sequence(n, v, path)
	case reflect.Map:
		d.mapping(n, v, path)
	default:
		d.scalar(n, v, path)
	}
}

// resolve follows aliases and charges the node against the budget; nil means stop.
func (d *decoder) resolve(n *yaml.Node, path string) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil {
		return nil
	}
	d.budget--
	if d.budget < 0 {
		if d.budget == -1 {
			d.ps.decodeErr(n.Line, path, "the document is too large, or uses aliases too much (over %d values)", maxNodes)
		}
		return nil
	}
	return n
}

// target returns the node an alias points to (n itself if it is not an alias).
func target(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// keyValue is one entry of a mapping, after merge keys ("<<") are expanded.
type keyValue struct{ key, value *yaml.Node }

// entries returns the entries of mapping node n in document order, expanding merge keys
// ("<<: *anchor") in place, where keys given explicitly win over merged ones. Duplicate and
// non-string keys are problems and left out.
func (d *decoder) entries(n *yaml.Node, path string) []keyValue {
	seen := map[string]int{} // key -> line
	var explicit []keyValue
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode {
			d.ps.decodeErr(k.Line, path, "mapping keys must be strings, found %s", describe(k))
			continue
		}
		if line, dup := seen[k.Value]; dup {
			d.ps.decodeErr(k.Line, child(path, k.Value), "duplicate key (first at line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		explicit = append(explicit, keyValue{k, v})
	}
	var out []keyValue
	for _, kv := range explicit {
		if kv.key.ShortTag() != "!!merge" {
			out = append(out, kv)
			continue
		}
		for _, m := range d.merged(kv.value, path) {
			if _, ok := seen[m.key.Value]; !ok {
				seen[m.key.Value] = m.key.Line
				out = append(out, m)
			}
		}
	}
	return out
}

// merged returns the entries a merge key's value brings: a mapping, or a list of mappings
// where earlier ones win.
func (d *decoder) merged(v *yaml.Node, path string) []keyValue {
	if v = d.resolve(v, path); v == nil {
		return nil
	}
	switch v.Kind {
	case yaml.MappingNode:
		return d.entries(v, path)
	case yaml.SequenceNode:
		var out []keyValue
		seen := map[string]bool{}
		for _, e := range v.Content {
			if e = d.resolve(e, path); e == nil {
				continue
			}
			if e.Kind != yaml.MappingNode {
				d.ps.decodeErr(e.Line, path, "a merge (<<) takes a mapping or a list of mappings, found %s", describe(e))
				continue
			}
			for _, kv := range d.entries(e, path) {
				if !seen[kv.key.Value] {
					seen[kv.key.Value] = true
					out = append(out, kv)
				}
			}
		}
		return out
	}
	d.ps.decodeErr(v.Line, path, "a merge (<<) takes a mapping or a list of mappings, found %s", describe(v))
	return nil
}

// structure decodes a mapping into struct v, refusing keys that name no field.
func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.ps.decodeErr(n.Line, path, "want a mapping, found %s", describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	for _, kv := range d.entries(n, path) {
		p := child(path, kv.key.Value)
		d.ps.lines[p] = kv.key.Line
		idx, ok := fields[kv.key.Value]
		if !ok {
			d.ps.decodeErr(kv.key.Line, p, "unknown field")
			continue
		}
		d.decode(kv.value, v.FieldByIndex(idx), p)
	}
}

// fieldsOf maps the YAML names of struct type t's fields to their indexes, flattening
// ",inline" fields the way yaml.v3 does.
func fieldsOf(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" && f.Type.Kind() == reflect.Struct {
			for k, idx := range fieldsOf(f.Type) {
				out[k] = append([]int{i}, idx...)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = []int{i}
	}
	return out
}

// sequence decodes a list into slice v.
func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.ps.decodeErr(n.Line, path, "want a list, found %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		p := index(path, i)
		d.ps.lines[p] = e.Line
		if isNull(target(e)) {
			// yaml.v3 would drop the item silently; it is more likely a mistake.
			d.ps.decodeErr(e.Line, p, "want %s, found null", kindName(v.Type().Elem()))
			continue
		}
		d.decode(e, s.Index(i), p)
	}
	v.Set(s)
}

// mapping decodes a mapping into map v (string keys).
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.ps.decodeErr(n.Line, path, "want a mapping, found %s", describe(n))
		return
	}
	m := reflect.MakeMap(v.Type())
	for _, kv := range d.entries(n, path) {
		p := child(path, kv.key.Value)
		d.ps.lines[p] = kv.key.Line
		e := reflect.New(v.Type().Elem()).Elem()
		d.decode(kv.value, e, p)
		m.SetMapIndex(reflect.ValueOf(kv.key.Value).Convert(v.Type().Key()), e)
	}
	v.Set(m)
}

// scalar decodes a scalar into v (a string, integer, float or bool) using yaml.v3's rules,
// except that an integer must be written as one.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	want := kindName(v.Type())
	if n.Kind != yaml.ScalarNode {
		d.ps.decodeErr(n.Line, path, "want %s, found %s", want, describe(n))
		return
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.ShortTag() == "!!float" {
			var f float64
			if err := n.Decode(&f); err != nil || f != math.Trunc(f) || math.IsInf(f, 0) {
				d.ps.decodeErr(n.Line, path, "want %s, found %s", want, describe(n))
				return
			}
		}
	}
	tmp := reflect.New(v.Type())
	if err := n.Decode(tmp.Interface()); err != nil {
		d.ps.decodeErr(n.Line, path, "want %s, found %s", want, describe(n))
		return
	}
	v.Set(tmp.Elem())
}

// styleLayers decodes a mapping of layer names to weights, keeping its order.
func (d *decoder) styleLayers(n *yaml.Node, path string) StyleLayers {
	if n = d.resolve(n, path); n == nil || isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.ps.decodeErr(n.Line, path, "want a mapping of layer names to weights, found %s", describe(n))
		return nil
	}
	out := StyleLayers{}
	for _, kv := range d.entries(n, path) {
		p := child(path, kv.key.Value)
		d.ps.lines[p] = kv.key.Line
		lw := LayerWeight{Layer: kv.key.Value, Line: kv.key.Line}
		if isNull(target(kv.value)) {
			d.ps.decodeErr(kv.key.Line, p, "want a number, found null")
		} else {
			d.decode(kv.value, reflect.ValueOf(&lw.Weight).Elem(), p)
		}
		out = append(out, lw)
	}
	return out
}

// describe names what a node holds, for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return strconv.Quote(n.Value)
	}
	return "something else"
}

// kindName names what a Go type wants, for messages.
func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice:
		return "a list"
	}
	return fmt.Sprintf("a %s", t)
}
