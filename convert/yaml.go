package convert

// A reader for the small YAML subset Karlo's configs/*.yaml use: block
// mappings nested by indentation, block sequences ("- item"), flow
// sequences of scalars ("[1, 2]"), plain, 'single' and "double" quoted
// scalars, comments and blank lines. Anchors, aliases, tags, multi-line
// scalars, flow mappings and several documents are refused with an error
// naming the line, rather than guessed at.

import (
	"fmt"
	"strconv"
	"strings"
)

// maxYAMLDepth bounds the nesting of a config (Karlo's is three deep).
const maxYAMLDepth = 32

// yamlMap is a block mapping, in file order.
type yamlMap struct {
	keys []string
	vals map[string]any // *yamlMap, []any or yamlScalar
	line map[string]int
}

// yamlScalar is one scalar as written; typed accessors interpret it.
type yamlScalar struct {
	s      string
	quoted bool
	line   int
}

// isNull reports a YAML null (~, null or nothing, unquoted).
func (s yamlScalar) isNull() bool {
	if s.quoted {
		return false
	}
	switch s.s {
	case "", "~", "null", "Null", "NULL":
		return true
	}
	return false
}

type yamlLine struct {
	no     int // 1-based
	indent int
	text   string // without indentation and trailing comment
}

type yamlParser struct {
	lines []yamlLine
	pos   int
}

// parseYAML reads one YAML document whose top level is a mapping.
func parseYAML(data []byte) (*yamlMap, error) {
	p := &yamlParser{}
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	text = strings.TrimPrefix(text, "\ufeff")
	for i, raw := range strings.Split(text, "\n") {
		no := i + 1
		body := strings.TrimLeft(raw, " ")
		indent := len(raw) - len(body)
		if strings.HasPrefix(body, "\t") {
			return nil, fmt.Errorf("line %d: tab in indentation", no)
		}
		body = strings.TrimRight(stripComment(body), " \t")
		if body == "" {
			continue
		}
		if indent == 0 && (body == "---" || body == "...") {
			if len(p.lines) > 0 && body == "---" {
				return nil, fmt.Errorf("line %d: several YAML documents are not supported", no)
			}
			continue
		}
		if strings.HasPrefix(body, "%") {
			return nil, fmt.Errorf("line %d: YAML directives are not supported", no)
		}
		p.lines = append(p.lines, yamlLine{no, indent, body})
	}
	if len(p.lines) == 0 {
		return &yamlMap{vals: map[string]any{}, line: map[string]int{}}, nil
	}
	if p.lines[0].indent != 0 {
		return nil, fmt.Errorf("line %d: the document must start at column 1", p.lines[0].no)
	}
	if isSeqItem(p.lines[0].text) {
		return nil, fmt.Errorf("line %d: the top level must be a mapping, not a sequence", p.lines[0].no)
	}
	m, err := p.mapping(0, 0)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.lines) {
		l := p.lines[p.pos]
		return nil, fmt.Errorf("line %d: unexpected indentation", l.no)
	}
	return m, nil
}

// stripComment cuts a " #" comment (or a line starting with "#") outside
// quotes.
func stripComment(s string) string {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				if quote == '\'' && i+1 < len(s) && s[i+1] == '\'' {
					i++ // '' inside single quotes
				} else {
					quote = 0
				}
			} else if c == '\\' && quote == '"' {
				i++
			}
		case c == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t'):
			return s[:i]
		case (c == '\'' || c == '"') && (i == 0 || strings.ContainsRune(" [,:-", rune(s[i-1]))):
			quote = c
		}
	}
	return s
}

func isSeqItem(text string) bool { return text == "-" || strings.HasPrefix(text, "- ") }

// block parses the value nested under a key at parent indentation indent.
func (p *yamlParser) block(indent, depth int) (any, error) {
	if depth > maxYAMLDepth {
		return nil, fmt.Errorf("line %d: nested deeper than %d", p.lines[p.pos].no, maxYAMLDepth)
	}
	l := p.lines[p.pos]
	if isSeqItem(l.text) {
		return p.sequence(l.indent, depth)
	}
	if l.indent <= indent {
		return nil, fmt.Errorf("line %d: expected an indented block", l.no)
	}
	return p.mapping(l.indent, depth)
}

func (p *yamlParser) mapping(indent, depth int) (*yamlMap, error) {
	m := &yamlMap{vals: map[string]any{}, line: map[string]int{}}
	for p.pos < len(p.lines) {
		l := p.lines[p.pos]
		if l.indent < indent {
			break
		}
		if l.indent > indent {
			return nil, fmt.Errorf("line %d: unexpected indentation", l.no)
		}
		if isSeqItem(l.text) {
			return nil, fmt.Errorf("line %d: a sequence item where a mapping key was expected", l.no)
		}
		key, rest, err := splitKey(l)
		if err != nil {
			return nil, err
		}
		if _, dup := m.vals[key]; dup {
			return nil, fmt.Errorf("line %d: duplicate key %q", l.no, key)
		}
		p.pos++
		var v any
		if rest != "" {
			v, err = flowValue(rest, l.no)
			if err != nil {
				return nil, err
			}
		} else if p.pos < len(p.lines) && (p.lines[p.pos].indent > indent ||
			(p.lines[p.pos].indent == indent && isSeqItem(p.lines[p.pos].text))) {
			v, err = p.block(indent, depth+1)
			if err != nil {
				return nil, err
			}
		} else {
			v = yamlScalar{line: l.no} // empty: null
		}
		m.keys = append(m.keys, key)
		m.vals[key] = v
		m.line[key] = l.no
	}
	return m, nil
}

func (p *yamlParser) sequence(indent, depth int) ([]any, error) {
	var out []any
	for p.pos < len(p.lines) {
		l := p.lines[p.pos]
		if l.indent < indent || (l.indent == indent && !isSeqItem(l.text)) {
			break
		}
		if l.indent > indent {
			return nil, fmt.Errorf("line %d: unexpected indentation", l.no)
		}
		rest := strings.TrimLeft(strings.TrimPrefix(l.text, "-"), " ")
		p.pos++
		if rest == "" {
			if p.pos < len(p.lines) && p.lines[p.pos].indent > indent {
				v, err := p.block(indent, depth+1)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
				continue
			}
			out = append(out, yamlScalar{line: l.no})
			continue
		}
		if isSeqItem(rest) || looksLikeKey(rest) {
			return nil, fmt.Errorf("line %d: nested collections inside a sequence item are not supported", l.no)
		}
		v, err := flowValue(rest, l.no)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// looksLikeKey reports a "key: value" or "key:" form outside quotes.
func looksLikeKey(s string) bool {
	if s == "" || s[0] == '\'' || s[0] == '"' || s[0] == '[' {
		return false
	}
	return strings.Contains(s, ": ") || strings.HasSuffix(s, ":")
}

// splitKey cuts "key: rest" (rest may be empty).
func splitKey(l yamlLine) (key, rest string, err error) {
	s := l.text
	if s[0] == '\'' || s[0] == '"' {
		k, n, err := quoted(s, l.no)
		if err != nil {
			return "", "", err
		}
		after := s[n:]
		if !strings.HasPrefix(after, ":") {
			return "", "", fmt.Errorf("line %d: expected ':' after the key", l.no)
		}
		return k, strings.TrimSpace(after[1:]), nil
	}
	i := strings.Index(s, ": ")
	if i < 0 {
		if !strings.HasSuffix(s, ":") {
			return "", "", fmt.Errorf("line %d: expected \"key: value\", got %q", l.no, s)
		}
		i = len(s) - 1
	}
	key = strings.TrimRight(s[:i], " ")
	if key == "" || strings.ContainsAny(key[:1], "&*!|>{[@`?") {
		return "", "", fmt.Errorf("line %d: unsupported key %q", l.no, key)
	}
	return key, strings.TrimSpace(s[i+1:]), nil
}

// flowValue parses a value written on the key's line.
func flowValue(s string, no int) (any, error) {
	switch s[0] {
	case '&', '*', '!', '|', '>', '@', '`', '%':
		return nil, fmt.Errorf("line %d: YAML feature %q is not supported", no, s[:1])
	case '{':
		if strings.TrimSpace(s) == "{}" {
			return &yamlMap{vals: map[string]any{}, line: map[string]int{}}, nil
		}
		return nil, fmt.Errorf("line %d: flow mappings are not supported", no)
	case '[':
		if !strings.HasSuffix(s, "]") {
			return nil, fmt.Errorf("line %d: unterminated flow sequence (multi-line flow sequences are not supported)", no)
		}
		inner := strings.TrimSpace(s[1 : len(s)-1])
		out := []any{}
		if inner == "" {
			return out, nil
		}
		for _, part := range splitFlow(inner) {
			part = strings.TrimSpace(part)
			if part == "" || strings.ContainsAny(part[:1], "[{") {
				return nil, fmt.Errorf("line %d: unsupported flow sequence item %q", no, part)
			}
			v, err := scalar(part, no)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	if looksLikeKey(s) {
		return nil, fmt.Errorf("line %d: a mapping on one line is not supported", no)
	}
	return scalar(s, no)
}

// splitFlow splits on commas outside quotes.
func splitFlow(s string) []string {
	var parts []string
	var quote byte
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' && quote == '"' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == ',':
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func scalar(s string, no int) (yamlScalar, error) {
	if s[0] == '\'' || s[0] == '"' {
		v, n, err := quoted(s, no)
		if err != nil {
			return yamlScalar{}, err
		}
		if strings.TrimSpace(s[n:]) != "" {
			return yamlScalar{}, fmt.Errorf("line %d: text after the closing quote", no)
		}
		return yamlScalar{s: v, quoted: true, line: no}, nil
	}
	return yamlScalar{s: s, line: no}, nil
}

// quoted decodes a quoted scalar at the start of s and returns it with the
// number of bytes it spans.
func quoted(s string, no int) (string, int, error) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == q && q == '\'' && i+1 < len(s) && s[i+1] == '\'':
			b.WriteByte('\'')
			i++
		case c == q:
			return b.String(), i + 1, nil
		case c == '\\' && q == '"':
			if i+1 >= len(s) {
				return "", 0, fmt.Errorf("line %d: unterminated escape", no)
			}
			i++
			switch s[i] {
			case '"', '\\', '/':
				b.WriteByte(s[i])
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				return "", 0, fmt.Errorf("line %d: unsupported escape \\%c", no, s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, fmt.Errorf("line %d: unterminated quoted string (multi-line strings are not supported)", no)
}

// lookup finds the value at a dotted path ("model.hparams.xf_heads").
func (m *yamlMap) lookup(path string) (any, bool) {
	cur := m
	parts := strings.Split(path, ".")
	for i, k := range parts {
		v, ok := cur.vals[k]
		if !ok {
			return nil, false
		}
		if i == len(parts)-1 {
			if s, isScalar := v.(yamlScalar); isScalar && s.isNull() {
				return nil, false
			}
			return v, true
		}
		next, ok := v.(*yamlMap)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return nil, false
}

// yamlInt interprets a plain scalar as a decimal integer.
func yamlInt(v any) (int, error) {
	s, ok := v.(yamlScalar)
	if !ok || s.quoted {
		return 0, fmt.Errorf("line %d: want an integer, got %s", yamlLineOf(v), yamlDescribe(v))
	}
	n, err := strconv.Atoi(strings.TrimPrefix(s.s, "+"))
	if err != nil {
		return 0, fmt.Errorf("line %d: want an integer, got %q", s.line, s.s)
	}
	return n, nil
}

// yamlBool interprets a plain scalar as a boolean (YAML 1.1 spellings, as
// PyYAML, which OmegaConf uses, reads them).
func yamlBool(v any) (bool, error) {
	s, ok := v.(yamlScalar)
	if ok && !s.quoted {
		switch strings.ToLower(s.s) {
		case "true", "yes", "on", "y":
			return true, nil
		case "false", "no", "off", "n":
			return false, nil
		}
	}
	return false, fmt.Errorf("line %d: want true or false, got %s", yamlLineOf(v), yamlDescribe(v))
}

// yamlString is a scalar's text, quoted or not (Karlo writes channel_mult
// as 1,2 and attention_resolutions as '8').
func yamlString(v any) (string, error) {
	s, ok := v.(yamlScalar)
	if !ok {
		return "", fmt.Errorf("line %d: want a string, got %s", yamlLineOf(v), yamlDescribe(v))
	}
	return s.s, nil
}

// yamlInts interprets a sequence of integers.
func yamlInts(v any) ([]int, error) {
	seq, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("line %d: want a list of integers, got %s", yamlLineOf(v), yamlDescribe(v))
	}
	out := make([]int, len(seq))
	for i, e := range seq {
		n, err := yamlInt(e)
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

func yamlLineOf(v any) int {
	switch x := v.(type) {
	case yamlScalar:
		return x.line
	case []any:
		if len(x) > 0 {
			return yamlLineOf(x[0])
		}
	case *yamlMap:
		if len(x.keys) > 0 {
			return x.line[x.keys[0]]
		}
	}
	return 0
}

func yamlDescribe(v any) string {
	switch x := v.(type) {
	case yamlScalar:
		if x.quoted {
			return strconv.Quote(x.s)
		}
		return x.s
	case []any:
		return "a list"
	case *yamlMap:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}
