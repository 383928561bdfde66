package model

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func tokGoldenDir(t testing.TB) string {
	dir := os.Getenv("DALLE2_GOLDEN")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "golden")
	}
	dir = filepath.Join(dir, "tokenizer")
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("golden tokenizer folder %s missing under CI: %v", dir, err)
		}
		t.Skipf("golden tokenizer folder %s missing: %v", dir, err)
	}
	return dir
}

var (
	tokOnce   sync.Once
	tokShared *Tokenizer
	tokVocab  map[int]string
	tokErr    error
)

// tokLoad builds the tokenizer from the golden vocab.json / merges.txt once.
func tokLoad(t testing.TB) (*Tokenizer, map[int]string) {
	dir := tokGoldenDir(t)
	tokOnce.Do(func() {
		vocab, err := os.ReadFile(filepath.Join(dir, "vocab.json"))
		if err != nil {
			tokErr = err
			return
		}
		merges, err := os.ReadFile(filepath.Join(dir, "merges.txt"))
		if err != nil {
			tokErr = err
			return
		}
		tokShared, tokErr = NewTokenizer(vocab, merges)
		var enc map[string]int
		if err := json.Unmarshal(vocab, &enc); err == nil {
			tokVocab = map[int]string{}
			for s, id := range enc {
				tokVocab[id] = s
			}
		}
	})
	require.NoError(t, tokErr)
	return tokShared, tokVocab
}

type tokRow struct {
	Idx           int    `json:"idx"`
	Category      string `json:"category"`
	PromptHex     string `json:"prompt_utf8_hex"`
	InputIDs      []int  `json:"input_ids"`
	AttentionMask []int  `json:"attention_mask"`
	Untruncated   []int  `json:"untruncated_ids"`
	Tokens        []string
}

func tokRows(t *testing.T) []tokRow {
	f, err := os.Open(filepath.Join(tokGoldenDir(t), "tokens.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	var rows []tokRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r tokRow
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "tokens.jsonl line %d", line)
		rows = append(rows, r)
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, rows, "tokens.jsonl has no prompts")
	return rows
}

// tokDiff describes the first difference between two id lists, with the
// BPE strings around it.
func tokDiff(vocab map[int]string, got, want []int) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	names := func(ids []int) string {
		lo, hi := max(0, i-3), min(len(ids), i+6)
		var parts []string
		for _, id := range ids[lo:hi] {
			parts = append(parts, fmt.Sprintf("%d:%q", id, vocab[id]))
		}
		return fmt.Sprintf("[%d:%d] %s", lo, hi, strings.Join(parts, " "))
	}
	return fmt.Sprintf("first difference at index %d (len got %d, want %d)\n\tgot  %s\n\twant %s", i, len(got), len(want), names(got), names(want))
}

func tokEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestTokenizerGolden checks every prompt of tokens.jsonl (transformers
// 4.36.2 slow CLIPTokenizer with ftfy 6.1.1): padded ids, attention mask and
// the untruncated ids, all exactly.
func TestTokenizerGolden(t *testing.T) {
	tok, vocab := tokLoad(t)
	rows := tokRows(t)
	pass := 0
	for _, r := range rows {
		raw, err := hex.DecodeString(r.PromptHex)
		require.NoError(t, err, "prompt %d: bad prompt_utf8_hex", r.Idx)
		prompt := string(raw)
		ids, mask := tok.Encode(prompt)
		untrunc := tok.EncodeUntruncated(prompt)
		ok := true
		if !tokEqual(ids, r.InputIDs) {
			ok = false
			t.Errorf("prompt %d (%s) %q: input_ids differ: %s", r.Idx, r.Category, prompt, tokDiff(vocab, ids, r.InputIDs))
		}
		if !tokEqual(mask, r.AttentionMask) {
			ok = false
			t.Errorf("prompt %d (%s) %q: attention_mask differs: got %v, want %v", r.Idx, r.Category, prompt, mask, r.AttentionMask)
		}
		if !tokEqual(untrunc, r.Untruncated) {
			ok = false
			t.Errorf("prompt %d (%s) %q: untruncated ids differ: %s", r.Idx, r.Category, prompt, tokDiff(vocab, untrunc, r.Untruncated))
		}
		if ok {
			pass++
		}
	}
	t.Logf("%d/%d golden prompts match exactly", pass, len(rows))
}

func TestTokenizerEmptyPrompt(t *testing.T) {
	tok, _ := tokLoad(t)
	for _, p := range []string{"", " ", "\t\n ", "\u00a0\u3000\ufeff"} {
		ids, mask := tok.Encode(p)
		require.Len(t, ids, ContextLength)
		require.Len(t, mask, ContextLength)
		want := make([]int, ContextLength)
		want[0], want[1] = 49406, 49407
		wantMask := make([]int, ContextLength)
		wantMask[0], wantMask[1] = 1, 1
		require.Equal(t, want, ids, "prompt %q", p)
		require.Equal(t, wantMask, mask, "prompt %q", p)
		require.Equal(t, []int{49406, 49407}, tok.EncodeUntruncated(p), "prompt %q", p)
	}
}

func TestTokenizerTruncation(t *testing.T) {
	tok, _ := tokLoad(t)
	prompt := strings.Repeat("a horse ", 60) // 120 content tokens
	ids, mask := tok.Encode(prompt)
	untrunc := tok.EncodeUntruncated(prompt)
	require.Len(t, untrunc, 122)
	require.Equal(t, 49407, ids[ContextLength-1], "eos must stay at index 76")
	require.Equal(t, untrunc[:ContextLength-1], ids[:ContextLength-1], "truncation keeps the first 75 content ids")
	for i, m := range mask {
		require.Equal(t, 1, m, "mask[%d]", i)
	}
	// Exactly 75 content tokens: nothing is cut, no padding.
	ids75, _ := tok.Encode(strings.Repeat("a ", 75))
	require.Equal(t, tok.EncodeUntruncated(strings.Repeat("a ", 75)), ids75)
}

// TestTokenizerPadToken pins the special-token split of "!" (id 0, never the
// BPE token "!</w>" = 256) while an HTML-escaped "!" inside a word still goes
// through BPE.
func TestTokenizerPadToken(t *testing.T) {
	tok, _ := tokLoad(t)
	require.Equal(t, []int{49406, 320, 2368, 0, 49407}, tok.EncodeUntruncated("a cat!"))
	require.Equal(t, []int{49406, 320, 2368, 256, 49407}, tok.EncodeUntruncated("a cat&#33;"))
}

func TestDecodeUTF8Replace(t *testing.T) {
	// Expected values from CPython: bytes.decode("utf-8", errors="replace").
	cases := map[string]string{
		"a\xe2\x82b":           "a\ufffdb",
		"\xed\xa0\x80":         "\ufffd\ufffd\ufffd",
		"\xf0\x9f\x90":         "\ufffd",
		"\xc0\x80":             "\ufffd\ufffd",
		"\xff\xfe":             "\ufffd\ufffd",
		"\xf4\x90\x80\x80":     "\ufffd\ufffd\ufffd\ufffd",
		"\xe0\x80\x80":         "\ufffd\ufffd\ufffd",
		"\xf0\x9f\x90\xb4\x80": "\U0001f434\ufffd",
		"ok \ufffd":            "ok \ufffd",
	}
	for in, want := range cases {
		require.Equal(t, want, decodeUTF8Replace(in), "input %q", in)
	}
}

// TestTokenizerInvalidUTF8 checks that invalid UTF-8 tokenizes like its
// Python errors="replace" decoding (one U+FFFD per maximal invalid subpart).
func TestTokenizerInvalidUTF8(t *testing.T) {
	tok, _ := tokLoad(t)
	for _, in := range []string{"a\xe2\x82b", "\xff", "horse\xed\xa0\x80!", "\xc3(\xc3\xa9"} {
		require.NotPanics(t, func() { tok.Encode(in) })
		require.Equal(t, tok.EncodeUntruncated(decodeUTF8Replace(in)), tok.EncodeUntruncated(in), "input %q", in)
	}
	require.Equal(t, tok.EncodeUntruncated("a\ufffdb"), tok.EncodeUntruncated("a\xe2\x82b"))
}

func TestNewTokenizerErrors(t *testing.T) {
	vocab := `{"!": 0, "a</w>": 1, "<|startoftext|>": 2, "<|endoftext|>": 3}`
	_, err := NewTokenizer([]byte(`{"a": `), []byte("#version: 0.2\na b\n"))
	require.ErrorContains(t, err, "vocab.json")
	_, err = NewTokenizer([]byte(vocab), []byte("#version: 0.2\na b\nc\n"))
	require.ErrorContains(t, err, "line 3")
	_, err = NewTokenizer([]byte(`{"!": 0, "a": 1}`), []byte("#version: 0.2\na b\n"))
	require.ErrorContains(t, err, "<|startoftext|>")
	require.ErrorContains(t, err, "<|endoftext|>")
	_, err = NewTokenizer([]byte(`{"<|startoftext|>": 1, "<|endoftext|>": 2}`), []byte("#version: 0.2\na b\n"))
	require.ErrorContains(t, err, `"!"`)
	_, err = NewTokenizer([]byte(vocab), []byte("#version: 0.2\n"))
	require.ErrorContains(t, err, "merges.txt")

	tok, err := NewTokenizer([]byte(vocab), []byte("#version: 0.2\r\na </w>\r\n"))
	require.NoError(t, err)
	require.Equal(t, []int{2, 1, 0, 3}, tok.EncodeUntruncated("A!"))
	require.Equal(t, []int{2, 3, 3}, tok.EncodeUntruncated("b"), "unknown symbols map to unk = eos")
}

// TestFtfyDocumentedExamples uses the examples in ftfy 6.1's docstrings and
// documentation as independent checks of the ported fixers.
func TestFtfyDocumentedExamples(t *testing.T) {
	cases := []struct{ in, want string }{
		{"âœ” No problems", "✔ No problems"},
		{"&macr;\\_(ã\u0083\u0084)_/&macr;", "¯\\_(ツ)_/¯"},
		{"Broken text&hellip; it&#x2019;s ﬂubberiﬁc!", "Broken text… it's flubberific!"},
		{"ＬＯＵＤ　ＮＯＩＳＥＳ", "LOUD NOISES"},
		{"sÃ³", "só"},
		{"voilÃ le travail", "voilà le travail"},
		{"schÃ¶n", "schön"},
		{"This text was never UTF-8 at all\u0085", "This text was never UTF-8 at all…"},
		{"\ufeffParty like\nit&rsquo;s 1999!", "Party like\nit's 1999!"},
		{"<em>HTML entities &lt;3</em>", "<em>HTML entities &lt;3</em>"},
		{"HTML entities &lt;3", "HTML entities <3"},
		{"&amp;\n<html>\n&amp;", "&\n<html>\n&amp;"},
		{"\x1b[36;44mI'm blue, da ba dee da ba doo...\x1b[0m", "I'm blue, da ba dee da ba doo..."},
		{"uÌˆnicode", "ünicode"},
		{"Ｕﾀｰﾝ", "Uターン"},
		{"ﬂuﬃeﬆ", "fluffiest"},
		{"This string is made of two things:\u2029" + "1. Unicode\u2028" + "2. Spite", "This string is made of two things:\n1. Unicode\n2. Spite"},
		{"Content-type: text/plain\r\n\r\nHi.", "Content-type: text/plain\n\nHi."},
		{"This text is fine already :þ", "This text is fine already :þ"},
		{"not such a fan of Charlotte Brontë…”", "not such a fan of Charlotte Brontë…\""},
	}
	for _, c := range cases {
		require.Equal(t, c.want, ftfyFixText(c.in), "fix_text(%q)", c.in)
	}
	entities := []struct{ in, want string }{
		{"&lt;tag&gt;", "<tag>"},
		{"&Jscr;ohn &HilbertSpace;ancock", "𝒥ohn ℋancock"},
		{"&checkmark;", "✓"},
		{"P&eacute;rez", "Pérez"},
		{"P&EACUTE;REZ", "PÉREZ"},
		{"BUNDESSTRA&SZLIG;E", "BUNDESSTRASSE"},
		{"&ntilde; &Ntilde; &NTILDE; &nTILDE;", "ñ Ñ Ñ &nTILDE;"},
		{"&#59; &#x41;&#X42; &#65x; &#xD800; &#0; &#1; &#99999999999999999999;", "&#59; AB &#65x; \ufffd \ufffd  \ufffd"},
	}
	for _, c := range entities {
		require.Equal(t, c.want, unescapeHTML(c.in), "unescape_html(%q)", c.in)
	}
}

func TestPyLowerAndNFC(t *testing.T) {
	// Expected values from CPython 3.11 str.lower() / unicodedata.normalize("NFC").
	lower := map[string]string{
		"İstanbul":   "i\u0307stanbul",
		"ΟΔΥΣΣΕΥΣ":   "οδυσσευς",
		"ΣΑ Σ aΣ. Σ": "σα σ aς. σ",
		"ẞ KELVIN K": "ß kelvin k",
		"ǅ":          "ǆ",
	}
	for in, want := range lower {
		require.Equal(t, want, pyLower(in), "lower(%q)", in)
	}
	norm := map[string]string{
		"e\u0301":               "é",
		"A\u030a vs \u212b":     "Å vs Å",
		"\u1100\u1161\u11a8":    "각",
		"a\u0323\u0302":         "ậ",
		"a\u0302\u0323":         "ậ",
		"e\u0301\u0301":         "é\u0301",
		"\u2126":                "Ω",
		"\u0958":                "\u0915\u093c", // composition exclusion
		"\uac00\u11a8":          "각",
		"\u0b47\u0b3e":          "\u0b4b",
		"q\u0307\u0323":         "q\u0323\u0307",
		"\U0001d15e":            "\U0001d157\U0001d165",
		"ｶ\uff9e (halfwidth)":   "ｶ\uff9e (halfwidth)",
		"\u1e9b\u0323 (long s)": "\u1e9b\u0323 (long s)",
	}
	for in, want := range norm {
		require.Equal(t, want, nfc(in), "NFC(%q)", in)
	}
}

// TestPreTokenize pins CLIP's split pattern; expected values from the regex
// module 2022.10.31 (regex.findall with IGNORECASE).
func TestPreTokenize(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"'\u017fa", []string{"'\u017f", "a"}},
		{"x\u0345y", []string{"x", "y"}},
		{"a<|endoftext|>b", []string{"a", "<|endoftext|>", "b"}},
		{"?<|endoftext|>", []string{"?<|", "endoftext", "|>"}},
		{"a1b22", []string{"a", "1", "b", "2", "2"}},
		{"('s", []string{"('", "s"}},
		{"'tis 'll'd", []string{"'t", "is", "'ll", "'d"}},
		{"<|\u017ftartoftext|>", []string{"<|\u017ftartoftext|>"}},
		{"\u217b\u2460 \u24d0", []string{"\u217b", "\u2460", "\u24d0"}},
		{"x\x1cy", []string{"x", "\x1c", "y"}},
		{"\u00e9\u0301", []string{"\u00e9", "\u0301"}},
	}
	for _, c := range cases {
		require.Equal(t, c.want, preTokenize(c.in), "preTokenize(%q)", c.in)
	}
}

// TestTokenizerConcurrent exercises the BPE cache from many goroutines (run
// with -race to check the locking).
func TestTokenizerConcurrent(t *testing.T) {
	tok, _ := tokLoad(t)
	prompts := []string{"a horse in a field", "supercalifragilistic", "Ελληνικά", "🐴🐴 and ⚡", "it's 2024!"}
	want := make([][]int, len(prompts))
	for i, p := range prompts {
		want[i] = tok.EncodeUntruncated(p)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 50; k++ {
				i := (g + k) % len(prompts)
				if got := tok.EncodeUntruncated(prompts[i]); !tokEqual(got, want[i]) {
					t.Errorf("prompt %q: got %v, want %v", prompts[i], got, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
}

func FuzzTokenizer(f *testing.F) {
	for _, s := range []string{"", "a horse", "it's 2024!", "cafÃ©", "&amp;amp;", "<|endoftext|!", "ΣΊΣΥΦΟΣ", "\xff\xfe",
		"\x1b[36mblue", "Ã  la carte", "ﬃ ＡＢＣ", "\ufeff\u2028x", "a\u0308bc"} {
		f.Add([]byte(s))
	}
	tok, _ := tokLoad(f)
	re := badnessRegexp()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		ids, mask := tok.Encode(string(data))
		if len(ids) != ContextLength || len(mask) != ContextLength {
			t.Fatalf("got %d ids, %d mask entries", len(ids), len(mask))
		}
		if ids[0] != 49406 {
			t.Fatalf("ids[0] = %d, want bos 49406", ids[0])
		}
		n := 0 // mask must be n ones followed by zeros
		for n < len(mask) && mask[n] == 1 {
			n++
		}
		for _, m := range mask[n:] {
			if m != 0 {
				t.Fatalf("mask is not ones then zeros: %v", mask)
			}
		}
		if n < 2 || ids[n-1] != 49407 {
			t.Fatalf("eos missing at index %d: ids %v mask %v", n-1, ids, mask)
		}
		for i, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("ids[%d] = %d out of [0, %d)", i, id, tok.VocabSize())
			}
			if i >= n && id != 0 {
				t.Fatalf("padding ids[%d] = %d, want 0", i, id)
			}
		}
		untrunc := tok.EncodeUntruncated(string(data))
		if len(untrunc) <= ContextLength && !tokEqual(untrunc, ids[:n]) {
			t.Fatalf("untruncated %v disagrees with %v", untrunc, ids[:n])
		}
		text := decodeUTF8Replace(string(data))
		if got, want := isBad(text), re.MatchString(text); got != want {
			t.Fatalf("isBad(%q) = %v, regexp says %v", text, got, want)
		}
		if !utf8.ValidString(ftfyFixText(text)) {
			t.Fatalf("ftfy produced invalid UTF-8")
		}
	})
}

func BenchmarkTokenizerEncode(b *testing.B) {
	tok, _ := tokLoad(b)
	for _, p := range []string{"a photo of a horse in a field, 35mm, bokeh", "Tom & Jerry's “great” adventure… café"} {
		b.Run(fmt.Sprintf("len=%d", len(p)), func(b *testing.B) {
			tok.Encode(p)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				tok.Encode(p)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Reference for isBad: ftfy 6.1.1's BADNESS_RE transliterated to Go regexp
// syntax, alternative for alternative.

const (
	// Python's \s and \w for str patterns.
	refPySpaceClass = `[\t-\r\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]`
	refPyWordClass  = `[\p{L}\p{N}_]`
)

// refEsc writes non-ASCII runes as \x{...}; ASCII is kept (it is regexp syntax).
func refEsc(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x80 {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, `\x{%x}`, r)
		}
	}
	return b.String()
}

func refClass(parts ...string) string { return "[" + refEsc(strings.Join(parts, "")) + "]" }

func badnessRegexp() *regexp.Regexp {
	c := refClass
	arabic := c(mbCommon, mbCurrency, mbBad, mbNumeric, mbStartPunct, "\u0178\u0160\u00ae\u00b0\u00b5\u00bb")
	rules := []string{
		c(mbC1),
		c(mbBad, mbLowerAcc, mbUpperAcc, mbBox, mbStartPunct, mbEndPunct, mbCurrency, mbNumeric) + c(mbBad),
		`[a-zA-Z]` + c(mbLowerCommon, mbUpperCommon) + c(mbBad),
		c(mbBad) + c(mbLowerAcc, mbUpperAcc, mbBox, mbStartPunct, mbEndPunct, mbCurrency, mbNumeric),
		c(mbLowerAcc, mbLowerCommon, mbBox, mbEndPunct, mbCurrency, mbNumeric) + c(mbUpperAcc),
		c(mbBox, mbEndPunct, mbCurrency, mbNumeric) + c(mbLowerAcc),
		c(mbLowerAcc, mbBox, mbEndPunct) + c(mbCurrency),
		refPySpaceClass + c(mbUpperAcc) + c(mbCurrency),
		c(mbUpperAcc, mbBox) + c(mbNumeric),
		c(mbLowerAcc, mbUpperAcc, mbBox, mbCurrency, mbEndPunct) + c(mbStartPunct) + c(mbNumeric),
		c(mbLowerAcc, mbUpperAcc, mbCurrency, mbNumeric, mbBox) + c(mbEndPunct) + c(mbStartPunct),
		c(mbCurrency, mbNumeric, mbBox) + c(mbStartPunct),
		`[a-z]` + c(mbUpperAcc) + c(mbStartPunct, mbCurrency),
		c(mbBox) + c(mbKaomoji),
		c(mbLowerAcc, mbUpperAcc, mbCurrency, mbNumeric, mbStartPunct, mbEndPunct) + c(mbBox),
		c(mbBox) + c(mbEndPunct),
		c(mbLowerAcc, mbUpperAcc) + c(mbEndPunct) + refPyWordClass,
		c("\u0152\u0153") + `[^A-Za-z]`,
		c("\u00c2\u00c3\u00ce\u00d0") + c("\u20ac\u0160\u0161\u00a2\u00a3\u0178\u017e\u00a0\u00ad\u00ae\u00a9\u00b0\u00b7\u00bb", mbStartPunct, mbEndPunct, "\u2013\u2014\u00b4"),
		refEsc("\u00d7") + c("\u00b2\u00b3"),
		c("\u00d8\u00d9") + arabic + c("\u00d8\u00d9") + arabic,
		refEsc("\u00e0") + c("\u00b2\u00b5\u00b9\u00bc\u00bd\u00be"),
		refEsc("\u221a") + c("\u00b1\u2202\u2020\u2260\u00ae\u2122\u00b4\u2264\u2265\u00a5\u00b5\u00f8"),
		refEsc("\u2248") + c("\u00b0\u00a2"),
		refEsc("\u201a\u00c4") + c("\u00ec\u00ee\u00ef\u00f2\u00f4\u00fa\u00f9\u00fb\u2020\u00b0\u00a2\u03c0"),
		refEsc("\u201a") + c("\u00e2\u00f3") + c("\u00e0\u00e4\u00b0\u00ea"),
		refEsc("\u0432\u0402"),
		c("\u0412\u0413\u0420\u0421") + c(mbC1, mbBad, mbStartPunct, mbEndPunct, mbCurrency, "\u00b0\u00b5") + c("\u0412\u0413\u0420\u0421"),
		refEsc("\u0413\u045e\u0412\u0402\u0412") + `.[A-Za-z ]`,
		refEsc("\u00c3") + c("\u00a0\u00a1"),
		`[a-z]` + refPySpaceClass + `?` + c("\u00c3\u00c2") + `[ ]`,
		`^` + c("\u00c3\u00c2") + `[ ]`,
		c("a-z.,?!", mbEndPunct) + refEsc("\u00c2") + c(" ", mbStartPunct, mbEndPunct),
		refEsc("\u03b2\u20ac") + c("\u2122\u00a0\u0386\u00ad\u00ae\u00b0"),
		c("\u0392\u0393\u039e\u039f") + c(mbC1, mbBad, mbStartPunct, mbEndPunct, mbCurrency, "\u00b0") + c("\u0392\u0393\u039e\u039f"),
	}
	return regexp.MustCompile(strings.Join(rules, "|"))
}

// TestBadnessMatchesRegexp checks the hand-written isBad against the regexp
// transliteration on the golden prompts and on random short strings over the
// heuristic's alphabet (every category character, the literal characters of
// the specific rules, ASCII letters, punctuation and whitespace).
func TestBadnessMatchesRegexp(t *testing.T) {
	re := badnessRegexp()
	var alphabet []rune
	seen := map[rune]bool{}
	for _, s := range []string{mbCommon, mbBad, mbCurrency, mbStartPunct, mbEndPunct, mbNumeric, mbUpperCommon,
		mbLowerCommon, mbBox, mbUpperAcc, mbLowerAcc, mbKaomoji,
		"\u0080\u0085\u009f\u0152\u0153\u00c2\u00c3\u00ce\u00d0\u0160\u0161\u0178\u017e\u00d7\u00d8\u00d9\u00e0\u221a\u2248\u201a\u00c4" +
			"\u00ec\u03c0\u00e2\u00f3\u00ea\u0432\u0402\u0412\u0413\u0420\u0421\u045e\u03b2\u0392\u0393\u039e\u039f\u0386\u03c9\u0436",
		"aAzZ_.,?!' \n\t\u00a0\u3000-09é"} {
		for _, r := range s {
			if r != '-' && !seen[r] {
				seen[r] = true
				alphabet = append(alphabet, r)
			}
		}
	}
	alphabet = append(alphabet, '-')
	check := func(s string) {
		if got, want := isBad(s), re.MatchString(s); got != want {
			t.Fatalf("isBad(%q) = %v, regexp says %v", s, got, want)
		}
	}
	for _, r := range tokRows(t) {
		raw, _ := hex.DecodeString(r.PromptHex)
		check(string(raw))
	}
	rng := uint64(0x9E3779B97F4A7C15)
	next := func(n int) int {
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		return int(rng % uint64(n))
	}
	const randomStrings = 40000 // about half of them are bad; ~0.7 s with the regexp
	bad := 0
	for k := 0; k < randomStrings; k++ {
		rs := make([]rune, 1+next(6))
		for i := range rs {
			rs[i] = alphabet[next(len(alphabet))]
		}
		s := string(rs)
		check(s)
		if isBad(s) {
			bad++
		}
	}
	t.Logf("%d of %d random strings are bad", bad, randomStrings)
}
