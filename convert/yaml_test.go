package convert

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseYAMLSubset(t *testing.T) {
	doc, err := parseYAML([]byte(`# a Karlo-style config
---
model:
  type: t2i-decoder   # comment
  hparams:
    image_size: 64
    channel_mult: ''
    attention_resolutions: 32,16,8
    quoted: "a # not a comment"
    single: 'it''s'
    neg: -1
    flag: true
    empty:
    list:
      - 1
      - 2
    flow: [1, '2', 3]
    same_indent_list:
    - 4
    - 5

diffusion:
  steps: 1000
sampling: {}
`))
	require.NoError(t, err)
	get := func(k string) any {
		v, ok := doc.lookup(k)
		require.True(t, ok, k)
		return v
	}
	s, err := yamlString(get("model.type"))
	require.NoError(t, err)
	require.Equal(t, "t2i-decoder", s)
	n, err := yamlInt(get("model.hparams.image_size"))
	require.NoError(t, err)
	require.Equal(t, 64, n)
	n, err = yamlInt(get("model.hparams.neg"))
	require.NoError(t, err)
	require.Equal(t, -1, n)
	s, _ = yamlString(get("model.hparams.channel_mult"))
	require.Equal(t, "", s)
	s, _ = yamlString(get("model.hparams.attention_resolutions"))
	require.Equal(t, "32,16,8", s)
	s, _ = yamlString(get("model.hparams.quoted"))
	require.Equal(t, "a # not a comment", s)
	s, _ = yamlString(get("model.hparams.single"))
	require.Equal(t, "it's", s)
	b, err := yamlBool(get("model.hparams.flag"))
	require.NoError(t, err)
	require.True(t, b)
	_, ok := doc.lookup("model.hparams.empty")
	require.False(t, ok, "an empty value is null")
	for _, k := range []string{"model.hparams.list", "model.hparams.same_indent_list"} {
		ns, err := yamlInts(get(k))
		require.NoError(t, err, k)
		require.Len(t, ns, 2, k)
	}
	ns, err := yamlInts(get("model.hparams.list"))
	require.NoError(t, err)
	require.Equal(t, []int{1, 2}, ns)
	_, err = yamlInts(get("model.hparams.flow"))
	require.ErrorContains(t, err, `want an integer, got "2"`) // quoted: a string
	n, _ = yamlInt(get("diffusion.steps"))
	require.Equal(t, 1000, n)
	_, ok = doc.lookup("model.nope")
	require.False(t, ok)
	_, err = yamlInt(get("model.type"))
	require.ErrorContains(t, err, "line 4")

	for _, c := range []struct{ src, msg string }{
		{"a:\n\tb: 1\n", "line 2: tab in indentation"},
		{"a: 1\na: 2\n", `line 2: duplicate key "a"`},
		{"a: &x 1\n", "not supported"},
		{"a: *x\n", "not supported"},
		{"a: |\n  text\n", "not supported"},
		{"a: {b: 1}\n", "flow mappings are not supported"},
		{"a: [1, 2\n", "unterminated flow sequence"},
		{"a: 'open\n", "unterminated quoted string"},
		{"- 1\n", "top level must be a mapping"},
		{"a: 1\n  b: 2\n", "line 2: unexpected indentation"},
		{"a:\n  - b: 1\n", "nested collections"},
		{"a: b: c\n", "mapping on one line"},
		{"a: 1\n---\nb: 2\n", "several YAML documents"},
		{"just text\n", `expected "key: value"`},
		{"a:\n  b: 1\n c: 2\n", "line 3"},
	} {
		_, err := parseYAML([]byte(c.src))
		require.ErrorContains(t, err, c.msg, c.src)
	}
}

// TestParseYAMLDepth: nesting is bounded, not a stack hazard.
func TestParseYAMLDepth(t *testing.T) {
	var src []byte
	for i := range 100 {
		for range i {
			src = append(src, ' ')
		}
		src = append(src, "k:\n"...)
	}
	_, err := parseYAML(src)
	require.ErrorContains(t, err, "nested deeper")
}

// FuzzParseYAML: any input parses or fails with an error, never panics.
func FuzzParseYAML(f *testing.F) {
	f.Add([]byte("model:\n  type: prior\n  hparams:\n    xf_heads: 32\n    l:\n    - 1\n    - '2'\n"))
	f.Add([]byte("a: [1, \"x\\\"y\", 'z''w']\nb:\n  - \n  -\n    c: 1\n"))
	f.Add([]byte("a: 'x # y' # z\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := parseYAML(data)
		if err != nil {
			return
		}
		for _, k := range doc.keys {
			v, _ := doc.lookup(k)
			_, _ = yamlInt(v)
			_, _ = yamlBool(v)
			_, _ = yamlString(v)
			_, _ = yamlInts(v)
		}
	})
}
