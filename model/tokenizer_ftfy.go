package model

// A port of the text clean-up CLIPTokenizer applies when ftfy is installed:
// ftfy 6.1.1's fix_text with its default TextFixerConfig, plus the Python str
// semantics (isspace, lower, NFC from unicodedata 14.0.0) the tokenizer relies
// on. Everything here works on valid UTF-8 strings.

import (
	"bytes"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// ftfyMaxDecodeLength is ftfy's max_decode_length: fix_text handles the text
// in segments of at most this many code points.
const ftfyMaxDecodeLength = 1000000

// ftfyMaxRounds bounds ftfy's "repeat until nothing changes" loops. ftfy
// itself loops without a bound; in practice two or three rounds suffice, and
// the bound only guarantees termination on adversarial input.
const ftfyMaxRounds = 64

// ftfyFixText is ftfy.fix_text(text) with the default configuration of ftfy
// 6.1.1. The text is cut after every "\n" (and every 10^6 code points) and
// each segment is fixed on its own. Once a segment contains "<", HTML
// unescaping is switched off for it and every later segment (ftfy's
// unescape_html="auto"). Each segment then goes through, repeated until it
// stops changing:
//
//   - unescape_html: HTML5 named entities ending in ";" (plus upper-case
//     variants of lower-case names, e.g. "&EACUTE;") and numeric references
//     like "&#39;"/"&#x263A;" via Python's html.unescape rules;
//   - fix_encoding: mojibake repair. When the text looks bad (ftfy's badness
//     heuristic), re-encode it in latin-1, sloppy-windows-1252/1251/1250/
//     1253/1254, iso-8859-2, macroman or cp437 and decode as UTF-8 (or
//     CESU-8/Java "utf-8-variants"), restoring a0 bytes turned into spaces and
//     replacing lossy sequences; else fix embedded UTF-8 mojibake piecewise;
//     else reinterpret latin-1 as windows-1252; else map C1 controls;
//   - fix_c1_controls (U+0080..U+009F -> windows-1252), fix_latin_ligatures
//     (ﬁ -> fi, ǆ -> dž, ...), fix_character_width (fullwidth/halfwidth forms
//     and U+3000 -> NFKC), uncurl_quotes (‘’‚‛ʼ -> ', “”„‟ -> "),
//     fix_line_breaks (\r\n, \r, U+2028, U+2029, U+0085 -> \n),
//     remove_terminal_escapes (ESC [ digits/; letter), remove_control_chars
//     (U+0000-0008, 000B, 000E-001F, 007F, 206A-206F, FEFF, FFF9-FFFC);
//   - NFC normalisation.
//
// fix_surrogates is a no-op here: Go strings cannot carry lone surrogates and
// none of the steps produces one (html.unescape maps surrogate references to
// U+FFFD). No other default fix is left out. Version details follow ftfy
// 6.1.1: the badness heuristic includes the 6.1 "Ñ" and 6.1.1 "ß" rules but
// none of 6.3's; restore_byte_a0 is also tried for macroman (6.2.0 stopped
// that); windows-1257 is not among the encodings (added in 6.3).
func ftfyFixText(text string) string {
	if text == "" {
		return ""
	}
	var out strings.Builder
	unescape := true
	for len(text) > 0 {
		end := strings.IndexByte(text, '\n') + 1
		if end == 0 {
			end = len(text)
		}
		if end > ftfyMaxDecodeLength {
			n := 0
			for i := range text[:end] {
				if n == ftfyMaxDecodeLength {
					end = i
					break
				}
				n++
			}
		}
		seg := text[:end]
		text = text[end:]
		if unescape && strings.IndexByte(seg, '<') >= 0 {
			unescape = false
		}
		out.WriteString(ftfyFixSegment(seg, unescape))
	}
	return out.String()
}

// ftfyFixSegment is ftfy.fix_and_explain on one segment.
func ftfyFixSegment(text string, unescape bool) string {
	for round := 0; round < ftfyMaxRounds; round++ {
		orig := text
		if unescape {
			text = unescapeHTML(text)
		}
		text = fixEncoding(text)
		text = fixC1Controls(text)
		text = fixLatinLigatures(text)
		text = fixCharacterWidth(text)
		text = uncurlQuotes(text)
		text = fixLineBreaks(text)
		text = removeTerminalEscapes(text)
		text = removeControlChars(text)
		text = nfc(text)
		if text == orig {
			break
		}
	}
	return text
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// Python str semantics

// isPySpace is Python's str.isspace for one code point (Unicode 14.0).
func isPySpace(r rune) bool {
	switch {
	case r <= 0x7F:
		return (r >= 0x09 && r <= 0x0D) || (r >= 0x1C && r <= 0x20)
	case r == 0x85 || r == 0xA0 || r == 0x1680 || r == 0x2028 || r == 0x2029 ||
		r == 0x202F || r == 0x205F || r == 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200A
}

// pyLower is Python's str.lower: the simple lower-case mapping, except
// U+0130 -> "i\u0307" (SpecialCasing) and capital sigma, which becomes final
// sigma ς after a cased letter (skipping case-ignorable ones) unless another
// cased letter follows.
func pyLower(s string) string {
	if isASCII(s) {
		return strings.ToLower(s)
	}
	rs := []rune(s)
	var b strings.Builder
	b.Grow(len(s))
	for i, r := range rs {
		switch r {
		case 0x130:
			b.WriteString("i\u0307")
		case 0x3A3:
			if finalSigma(rs, i) {
				b.WriteRune(0x3C2)
			} else {
				b.WriteRune(0x3C3)
			}
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// finalSigma is CPython's handle_capital_sigma context test.
func finalSigma(rs []rune, i int) bool {
	j := i - 1
	for j >= 0 && isCaseIgnorable(rs[j]) {
		j--
	}
	if j < 0 || !isCased(rs[j]) {
		return false
	}
	j = i + 1
	for j < len(rs) && isCaseIgnorable(rs[j]) {
		j++
	}
	return j == len(rs) || !isCased(rs[j])
}

// isCased is the Unicode Cased property.
func isCased(r rune) bool {
	return unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r) ||
		unicode.Is(unicode.Other_Lowercase, r) || unicode.Is(unicode.Other_Uppercase, r)
}

// isCaseIgnorable is the Unicode Case_Ignorable property: Mn, Me, Cf, Lm, Sk
// and Word_Break MidLetter, MidNumLet and Single_Quote.
func isCaseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', 0xB7, 0x387, 0x55F, 0x5F4, 0x2018, 0x2019, 0x2024, 0x2027,
		0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}

// ---------------------------------------------------------------------------
// Generated tables, parsed once

type ftfyTables struct {
	nfd       map[rune][]rune
	ccc       []cccRange
	comp      map[[2]rune]rune
	width     map[rune]string
	entities  map[string]string
	charrefs  map[int]rune
	invalidCP map[int]bool
	codecs    []*sbcs // in ftfy's CHARMAP_ENCODINGS order
}

type cccRange struct {
	lo, hi rune
	class  uint8
}

// sbcs is a single-byte charset as ftfy uses it.
type sbcs struct {
	name   string
	sloppy bool // byte 0x1A stands for U+FFFD
	high   [128]rune
	enc    map[rune]byte
}

var (
	tablesOnce sync.Once
	tables     *ftfyTables
)

func ftfyData() *ftfyTables {
	tablesOnce.Do(func() { tables = parseTables() })
	return tables
}

// parseEntries splits "KEY=VALUE;KEY=VALUE;..." data.
func parseEntries(data string, f func(k, v string)) {
	for _, e := range strings.Split(strings.TrimSuffix(data, ";"), ";") {
		k, v, _ := strings.Cut(e, "=")
		f(k, v)
	}
}

func hexRune(s string) rune {
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		panic("tokenizer tables: bad hex " + s) // generated data; cannot happen
	}
	return rune(v)
}

func hexRunes(s string) []rune {
	f := strings.Fields(s)
	rs := make([]rune, len(f))
	for i, x := range f {
		rs[i] = hexRune(x)
	}
	return rs
}

func parseTables() *ftfyTables {
	t := &ftfyTables{
		nfd: map[rune][]rune{}, comp: map[[2]rune]rune{}, width: map[rune]string{},
		entities: map[string]string{}, charrefs: map[int]rune{}, invalidCP: map[int]bool{},
	}
	parseEntries(nfdData, func(k, v string) { t.nfd[hexRune(k)] = hexRunes(v) })
	parseEntries(cccData, func(k, v string) {
		lo, hi, _ := strings.Cut(k, "-")
		c, _ := strconv.Atoi(v)
		t.ccc = append(t.ccc, cccRange{hexRune(lo), hexRune(hi), uint8(c)})
	})
	parseEntries(compData, func(k, v string) {
		ab := hexRunes(k)
		t.comp[[2]rune{ab[0], ab[1]}] = hexRune(v)
	})
	parseEntries(widthData, func(k, v string) { t.width[hexRune(k)] = string(hexRunes(v)) })
	parseEntries(htmlEntityData, func(k, v string) { t.entities["&"+k+";"] = string(hexRunes(v)) })
	parseEntries(htmlInvalidCharrefData, func(k, v string) { t.charrefs[int(hexRune(k))] = hexRune(v) })
	for _, k := range strings.Split(strings.TrimSuffix(htmlInvalidCodepointData, ";"), ";") {
		t.invalidCP[int(hexRune(k))] = true
	}

	latin1 := &sbcs{name: "latin-1"}
	for i := range latin1.high {
		latin1.high[i] = rune(0x80 + i)
	}
	t.codecs = append(t.codecs, latin1)
	for _, name := range []string{"sloppy-windows-1252", "sloppy-windows-1251", "sloppy-windows-1250",
		"sloppy-windows-1253", "sloppy-windows-1254", "iso-8859-2", "macroman", "cp437"} {
		c := &sbcs{name: name, sloppy: strings.HasPrefix(name, "sloppy-")}
		for i, v := range codecHigh[name] {
			c.high[i] = rune(v)
		}
		t.codecs = append(t.codecs, c)
	}
	for _, c := range t.codecs {
		c.enc = make(map[rune]byte, 128)
		for i, r := range c.high {
			c.enc[r] = byte(0x80 + i)
		}
	}
	return t
}

// ---------------------------------------------------------------------------
// unescape_html

// unescapeHTML replaces every match of &#?[0-9A-Za-z]{1,24}; that names an
// entity in ftfy's table, or that Python's html.unescape decodes completely
// as a numeric character reference.
func unescapeHTML(s string) string {
	if strings.IndexByte(s, '&') < 0 {
		return s
	}
	t := ftfyData()
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '&' {
			continue
		}
		j := i + 1
		hash := j < len(s) && s[j] == '#'
		if hash {
			j++
		}
		k := j
		for k < len(s) && isASCIIAlnum(s[k]) {
			k++
		}
		if k-j < 1 || k-j > 24 || k >= len(s) || s[k] != ';' {
			continue
		}
		ent := s[i : k+1]
		rep, ok := t.entities[ent]
		if !ok && hash {
			rep, ok = numericCharref(t, s[j:k])
			if ok && strings.IndexByte(rep, ';') >= 0 {
				ok = false // ftfy keeps references html.unescape only partly consumes
			}
		}
		if !ok {
			i = k
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(rep)
		last = k + 1
		i = k
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func isASCIIAlnum(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// numericCharref decodes the body of "&#body;" the way html.unescape does.
// It reports false when html.unescape would leave part of the text (including
// the ";") undecoded.
func numericCharref(t *ftfyTables, body string) (string, bool) {
	base, digits := 10, body
	if body[0] == 'x' || body[0] == 'X' {
		base, digits = 16, body[1:]
	}
	if digits == "" {
		return "", false
	}
	num := 0
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		var d int
		switch {
		case c >= '0' && c <= '9':
			d = int(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = int(c-'a') + 10
		case base == 16 && c >= 'A' && c <= 'F':
			d = int(c-'A') + 10
		default:
			return "", false
		}
		if num <= 0x10FFFF {
			num = num*base + d
		}
	}
	if r, ok := t.charrefs[num]; ok {
		return string(r), true
	}
	if (num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF {
		return "\uFFFD", true
	}
	if t.invalidCP[num] {
		return "", true
	}
	return string(rune(num)), true
}

// ---------------------------------------------------------------------------
// fix_encoding

// fixEncoding is ftfy.fix_encoding: apply one-step fixes until the text stops
// changing.
func fixEncoding(text string) string {
	for round := 0; round < ftfyMaxRounds; round++ {
		prev := text
		text = fixEncodingOneStep(text)
		if text == prev {
			break
		}
	}
	return text
}

func fixEncodingOneStep(text string) string {
	if text == "" || isASCII(text) || !isBad(text) {
		return text
	}
	t := ftfyData()
	latin1Possible := false
	for _, c := range t.codecs {
		if !c.possible(text) {
			continue
		}
		if c.name == "latin-1" {
			latin1Possible = true
		}
		b := c.encode(text)
		if alteredUTF8(b) {
			b = restoreByteA0(b)
		}
		if c.sloppy {
			b = replaceLossySequences(b)
		}
		variants := bytes.IndexByte(b, 0xED) >= 0 || bytes.IndexByte(b, 0xC0) >= 0
		if fixed, ok := decodeUTF8Strict(b, variants); ok {
			return fixed
		}
	}
	if hasUTF8Mojibake(text) {
		if fixed := decodeInconsistentUTF8(text); fixed != text {
			return fixed
		}
	}
	// "windows-1252" is never among the possible encodings (ftfy only lists the
	// sloppy variant), so latin-1 text is reinterpreted as strict windows-1252.
	if latin1Possible {
		if fixed, ok := decodeWindows1252Strict(text); ok && fixed != text {
			return fixed
		}
	}
	if hasC1(text) {
		return fixC1Controls(text)
	}
	return text
}

// possible is ftfy's possible_encoding: every character is ASCII other than
// U+001A, or one of the characters bytes 0x80..0xFF and 0x1A decode to.
func (c *sbcs) possible(s string) bool {
	for _, r := range s {
		if r < 0x80 {
			if r == 0x1A && c.sloppy {
				return false
			}
			continue
		}
		if r == 0xFFFD && c.sloppy {
			continue
		}
		if _, ok := c.enc[r]; !ok {
			return false
		}
	}
	return true
}

// encode encodes s, which must pass possible.
func (c *sbcs) encode(s string) []byte {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		switch {
		case r < 0x80:
			b = append(b, byte(r))
		case r == 0xFFFD && c.sloppy:
			b = append(b, 0x1A)
		default:
			b = append(b, c.enc[r])
		}
	}
	return b
}

// decodeUTF8Strict decodes b as Python's strict "utf-8" codec, or, with
// variants, ftfy's "utf-8-variants" (which also accepts CESU-8 surrogate pairs
// ED A0-AF xx ED B0-BF xx and Java's C0 80 for U+0000).
func decodeUTF8Strict(b []byte, variants bool) (string, bool) {
	if !variants {
		if !utf8.Valid(b) {
			return "", false
		}
		return string(b), true
	}
	var out strings.Builder
	for i := 0; i < len(b); {
		if b[i] == 0xC0 && i+1 < len(b) && b[i+1] == 0x80 {
			out.WriteByte(0)
			i += 2
			continue
		}
		if b[i] == 0xED && i+5 < len(b) && b[i+1] >= 0xA0 && b[i+1] <= 0xAF && isCont(b[i+2]) &&
			b[i+3] == 0xED && b[i+4] >= 0xB0 && b[i+4] <= 0xBF && isCont(b[i+5]) {
			cp := rune(b[i+1]&0x0F)<<16 + rune(b[i+2]&0x3F)<<10 + rune(b[i+4]&0x0F)<<6 + rune(b[i+5]&0x3F) + 0x10000
			out.WriteRune(cp)
			i += 6
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return "", false
		}
		out.Write(b[i : i+size])
		i += size
	}
	return out.String(), true
}

func isCont(c byte) bool { return c >= 0x80 && c <= 0xBF }

// decodeWindows1252Strict is text.encode("latin-1").decode("windows-1252").
func decodeWindows1252Strict(text string) (string, bool) {
	w := ftfyData().codecs[1] // sloppy-windows-1252
	var b strings.Builder
	for _, r := range text {
		if r < 0x80 || r > 0xFF {
			b.WriteRune(r) // r > 0xFF cannot happen: the text passed latin-1's possible
			continue
		}
		for _, u := range win1252Undefined {
			if byte(r) == u {
				return "", false
			}
		}
		b.WriteRune(w.high[r-0x80])
	}
	return b.String(), true
}

// alteredUTF8 reports whether ftfy's ALTERED_UTF8_RE matches b: UTF-8
// sequences that would be valid had a 0xA0 byte not become a space.
func alteredUTF8(b []byte) bool {
	for i := range b {
		if alteredAt(b, i) > 0 {
			return true
		}
	}
	return false
}

// alteredAt returns the length of the ALTERED_UTF8_RE match at b[i:], or 0.
// The alternatives, tried in order:
//
//	[\xc2\xc3\xc5\xce\xd0\xd9][ ]
//	[\xe2\xe3][ ][\x80-\x84\x86-\x9f\xa1-\xbf]
//	[\xe0-\xe3][\x80-\x84\x86-\x9f\xa1-\xbf][ ]
//	[\xf0][ ][\x80-\xbf][\x80-\xbf]
//	[\xf0][\x80-\xbf][ ][\x80-\xbf]
//	[\xf0][\x80-\xbf][\x80-\xbf][ ]
func alteredAt(b []byte, i int) int {
	at := func(k int) int {
		if i+k < len(b) {
			return int(b[i+k])
		}
		return -1
	}
	mid := func(c int) bool {
		return (c >= 0x80 && c <= 0x84) || (c >= 0x86 && c <= 0x9F) || (c >= 0xA1 && c <= 0xBF)
	}
	cont := func(c int) bool { return c >= 0x80 && c <= 0xBF }
	c0 := at(0)
	switch {
	case (c0 == 0xC2 || c0 == 0xC3 || c0 == 0xC5 || c0 == 0xCE || c0 == 0xD0 || c0 == 0xD9) && at(1) == ' ':
		return 2
	case (c0 == 0xE2 || c0 == 0xE3) && at(1) == ' ' && mid(at(2)):
		return 3
	case c0 >= 0xE0 && c0 <= 0xE3 && mid(at(1)) && at(2) == ' ':
		return 3
	case c0 == 0xF0 && at(1) == ' ' && cont(at(2)) && cont(at(3)):
		return 4
	case c0 == 0xF0 && cont(at(1)) && at(2) == ' ' && cont(at(3)):
		return 4
	case c0 == 0xF0 && cont(at(1)) && cont(at(2)) && at(3) == ' ':
		return 4
	}
	return 0
}

// restoreByteA0 is ftfy's restore_byte_a0: first "\xc3 " not followed by
// " ", "quele", "quela", "quilo" or "s " becomes "\xc3\xa0 " (the "à la"
// case), then spaces inside ALTERED_UTF8_RE matches become 0xA0.
func restoreByteA0(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); {
		if b[i] == 0xC3 && i+1 < len(b) && b[i+1] == ' ' {
			rest := b[i+2:]
			if !(bytes.HasPrefix(rest, []byte(" ")) || bytes.HasPrefix(rest, []byte("quele")) ||
				bytes.HasPrefix(rest, []byte("quela")) || bytes.HasPrefix(rest, []byte("quilo")) ||
				bytes.HasPrefix(rest, []byte("s "))) {
				out = append(out, 0xC3, 0xA0, ' ')
				i += 2
				continue
			}
		}
		out = append(out, b[i])
		i++
	}
	b = out
	out = make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		if n := alteredAt(b, i); n > 0 {
			for _, c := range b[i : i+n] {
				if c == ' ' {
					c = 0xA0
				}
				out = append(out, c)
			}
			i += n
			continue
		}
		out = append(out, b[i])
		i++
	}
	return out
}

// replaceLossySequences is ftfy's replace_lossy_sequences: UTF-8 sequences
// with a byte lost to 0x1A (or once to "?") become the UTF-8 of U+FFFD.
func replaceLossySequences(b []byte) []byte {
	if bytes.IndexByte(b, 0x1A) < 0 && bytes.IndexByte(b, '?') < 0 {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		if n := lossyAt(b, i); n > 0 {
			out = append(out, 0xEF, 0xBF, 0xBD)
			i += n
			continue
		}
		out = append(out, b[i])
		i++
	}
	return out
}

// lossyAt returns the length of the LOSSY_UTF8_RE match at b[i:], or 0:
//
//	[\xc2-\xdf][\x1a]
//	[\xc2-\xc3][?]
//	\xed[\xa0-\xaf][\x1a?]\xed[\xb0-\xbf][\x1a?\x80-\xbf]
//	\xed[\xa0-\xaf][\x1a?\x80-\xbf]\xed[\xb0-\xbf][\x1a?]
//	[\xe0-\xef][\x1a?][\x1a\x80-\xbf]
//	[\xe0-\xef][\x1a\x80-\xbf][\x1a?]
//	[\xf0-\xf4][\x1a?][\x1a\x80-\xbf][\x1a\x80-\xbf]
//	[\xf0-\xf4][\x1a\x80-\xbf][\x1a?][\x1a\x80-\xbf]
//	[\xf0-\xf4][\x1a\x80-\xbf][\x1a\x80-\xbf][\x1a?]
//	\x1a
func lossyAt(b []byte, i int) int {
	at := func(k int) int {
		if i+k < len(b) {
			return int(b[i+k])
		}
		return -1
	}
	in := func(c, lo, hi int) bool { return c >= lo && c <= hi }
	sub := func(c int) bool { return c == 0x1A || c == '?' }           // [\x1a?]
	subc := func(c int) bool { return c == 0x1A || in(c, 0x80, 0xBF) } // [\x1a\x80-\xbf]
	subqc := func(c int) bool { return sub(c) || in(c, 0x80, 0xBF) }   // [\x1a?\x80-\xbf]
	c0 := at(0)
	switch {
	case in(c0, 0xC2, 0xDF) && at(1) == 0x1A:
		return 2
	case in(c0, 0xC2, 0xC3) && at(1) == '?':
		return 2
	case c0 == 0xED && in(at(1), 0xA0, 0xAF) && sub(at(2)) && at(3) == 0xED && in(at(4), 0xB0, 0xBF) && subqc(at(5)):
		return 6
	case c0 == 0xED && in(at(1), 0xA0, 0xAF) && subqc(at(2)) && at(3) == 0xED && in(at(4), 0xB0, 0xBF) && sub(at(5)):
		return 6
	case in(c0, 0xE0, 0xEF) && sub(at(1)) && subc(at(2)):
		return 3
	case in(c0, 0xE0, 0xEF) && subc(at(1)) && sub(at(2)):
		return 3
	case in(c0, 0xF0, 0xF4) && sub(at(1)) && subc(at(2)) && subc(at(3)):
		return 4
	case in(c0, 0xF0, 0xF4) && subc(at(1)) && sub(at(2)) && subc(at(3)):
		return 4
	case in(c0, 0xF0, 0xF4) && subc(at(1)) && subc(at(2)) && sub(at(3)):
		return 4
	case c0 == 0x1A:
		return 1
	}
	return 0
}

// Character classes of ftfy's UTF8_DETECTOR_RE (UTF8_CLUES): characters that
// bytes C2-DF, E0-EF, F0/F3 and 80-BF decode to in latin-1 and the
// windows-1252/1251/1250/1253/1254 code pages.
const (
	utf8First2 = "\u00c2\u00c3\u00c4\u00c5\u00c6\u00c7\u00c8\u00c9\u00ca\u00cb\u00cc\u00cd\u00ce\u00cf\u00d0\u00d1" +
		"\u00d2\u00d3\u00d4\u00d5\u00d6\u00d7\u00d8\u00d9\u00da\u00db\u00dc\u00dd\u00de\u00df\u0102\u0106\u010c\u010e" +
		"\u0110\u0118\u011a\u011e\u0130\u0139\u0143\u0147\u0150\u0158\u015e\u0162\u016e\u0170\u0392\u0393\u0394\u0395" +
		"\u0396\u0397\u0398\u0399\u039a\u039b\u039c\u039d\u039e\u039f\u03a0\u03a1\u03a3\u03a4\u03a5\u03a6\u03a7\u03a8" +
		"\u03a9\u03aa\u03ab\u03ac\u03ad\u03ae\u03af\u0412\u0413\u0414\u0415\u0416\u0417\u0418\u0419\u041a\u041b\u041c" +
		"\u041d\u041e\u041f\u0420\u0421\u0422\u0423\u0424\u0425\u0426\u0427\u0428\u0429\u042a\u042b\u042c\u042d\u042e\u042f"
	utf8First3 = "\u00e0\u00e1\u00e2\u00e3\u00e4\u00e5\u00e6\u00e7\u00e8\u00e9\u00ea\u00eb\u00ec\u00ed\u00ee\u00ef" +
		"\u0103\u0107\u010d\u010f\u0119\u011b\u013a\u0155\u03b0\u03b1\u03b2\u03b3\u03b4\u03b5\u03b6\u03b7\u03b8\u03b9" +
		"\u03ba\u03bb\u03bc\u03bd\u03be\u03bf\u0430\u0431\u0432\u0433\u0434\u0435\u0436\u0437\u0438\u0439\u043a\u043b" +
		"\u043c\u043d\u043e\u043f"
	utf8First4 = "\u00f0\u00f3\u0111\u011f\u03c0\u03c3\u0440\u0443"
	// utf8ContLetters are the non-Latin-1 continuation characters that rarely
	// stand for themselves next to mojibake ("utf8_continuation_strict",
	// together with U+0080..U+00BF).
	utf8ContLetters = "\u0104\u0105\u013d\u013e\u0141\u0142\u0152\u0153\u015a\u015b\u015e\u015f\u0160\u0161\u0164\u0165" +
		"\u0178\u0179\u017a\u017b\u017c\u017d\u017e\u0192\u02c6\u02c7\u02d8\u02db\u02dc\u02dd\u0384\u0385\u0386\u0388" +
		"\u0389\u038a\u038c\u038e\u038f\u0401\u0402\u0403\u0404\u0405\u0406\u0407\u0408\u0409\u040a\u040b\u040c\u040e" +
		"\u040f\u0451\u0452\u0453\u0454\u0455\u0456\u0457\u0458\u0459\u045a\u045b\u045c\u045e\u045f\u0490\u0491\u2020" +
		"\u2021\u2022\u2030\u2039\u203a\u20ac\u2116\u2122"
	// utf8ContPunct are continuation characters that often stand for
	// themselves (dashes, quotes, ellipsis) plus the space standing in for
	// 0xA0; only "utf8_continuation" includes them.
	utf8ContPunct = "\u2013\u2014\u2015\u2018\u2019\u201a\u201c\u201d\u201e\u2026 "
)

func isUTF8Cont(r rune) bool {
	return (r >= 0x80 && r <= 0xBF) || strings.ContainsRune(utf8ContLetters, r) || strings.ContainsRune(utf8ContPunct, r)
}

func isUTF8ContStrict(r rune) bool {
	return (r >= 0x80 && r <= 0xBF) || strings.ContainsRune(utf8ContLetters, r)
}

// utf8MojibakeAt returns the end of the UTF8_DETECTOR_RE match starting at
// rs[i] (the lookbehind already checked), or i when there is none:
//
//	([first_of_2][cont] | [first_of_3][cont]{2} | [first_of_4][cont]{3})+
func utf8MojibakeAt(rs []rune, i int) int {
	conts := func(k, n int) bool {
		if k+n > len(rs) {
			return false
		}
		for _, r := range rs[k : k+n] {
			if !isUTF8Cont(r) {
				return false
			}
		}
		return true
	}
	for i < len(rs) {
		r := rs[i]
		switch {
		case strings.ContainsRune(utf8First2, r) && conts(i+1, 1):
			i += 2
		case strings.ContainsRune(utf8First3, r) && conts(i+1, 2):
			i += 3
		case strings.ContainsRune(utf8First4, r) && conts(i+1, 3):
			i += 4
		default:
			return i
		}
	}
	return i
}

// hasUTF8Mojibake is UTF8_DETECTOR_RE.search(text).
func hasUTF8Mojibake(text string) bool {
	rs := []rune(text)
	for i := range rs {
		if (i == 0 || !isUTF8ContStrict(rs[i-1])) && utf8MojibakeAt(rs, i) > i {
			return true
		}
	}
	return false
}

// decodeInconsistentUTF8 is ftfy's decode_inconsistent_utf8: each
// UTF8_DETECTOR_RE match (not preceded by a strict continuation character)
// that is shorter than the text and looks bad is replaced by its own
// fix_encoding.
func decodeInconsistentUTF8(text string) string {
	rs := []rune(text)
	var b strings.Builder
	last := 0
	for i := 0; i < len(rs); {
		if i > 0 && isUTF8ContStrict(rs[i-1]) {
			i++
			continue
		}
		end := utf8MojibakeAt(rs, i)
		if end == i {
			i++
			continue
		}
		sub := string(rs[i:end])
		if end-i < len(rs) && isBad(sub) {
			b.WriteString(string(rs[last:i]))
			b.WriteString(fixEncoding(sub))
			last = end
		}
		i = end
	}
	if last == 0 {
		return text
	}
	b.WriteString(string(rs[last:]))
	return b.String()
}

// ---------------------------------------------------------------------------
// The badness heuristic (ftfy 6.1.1 badness.py)

// Character categories of ftfy's MOJIBAKE_CATEGORIES ("x-y" is a range).
const (
	mbCommon     = "\u00a0\u00ad\u00b7\u00b4\u2013\u2014\u2015\u2026\u2019"
	mbC1         = "\u0080-\u009f"
	mbBad        = "\u00a6\u00a4\u00a8\u00ac\u00af\u00b6\u00a7\u00b8\u0192\u02c6\u02c7\u02d8\u02db\u02dc\u2020\u2021\u2030\u2310\u25ca\ufffd\u00aa\u00ba"
	mbCurrency   = "\u00a2\u00a3\u00a5\u20a7\u20ac"
	mbStartPunct = "\u00a1\u00ab\u00bf\u00a9\u0384\u0385\u2018\u201a\u201c\u201e\u2022\u2039\uf8ff"
	mbEndPunct   = "\u00ae\u00bb\u02dd\u201d\u203a\u2122"
	mbNumeric    = "\u00b2\u00b3\u00b9\u00b1\u00bc\u00bd\u00be\u00d7\u00b5\u00f7\u2044\u2202\u2206\u220f\u2211\u221a\u221e\u2229\u222b\u2248\u2260\u2261\u2264\u2265\u2116"
	mbKaomoji    = "\u00d2-\u00d6\u00d9-\u00dc\u00f2-\u00f6\u00f8-\u00fc\u0150\u00b0"
	mbUpperAcc   = "\u00c0-\u00d1\u00d8\u00dc\u00dd\u0102\u0104\u0106\u010c\u010e\u0110\u0118\u011a\u011e\u0130\u0139\u013d" +
		"\u0141\u0143\u0147\u0152\u0158\u015a\u015e\u0160\u0162\u0164\u016e\u0170\u0178\u0179\u017b\u017d\u0490"
	mbLowerAcc = "\u00df\u00e0-\u00f1\u0103\u0105\u0107\u010d\u010f\u0111\u0119\u011b\u011f\u013a\u013e\u0142\u0153\u0155" +
		"\u015b\u015f\u0161\u0165\u00fc\u017a\u017c\u017e\u0491\ufb01\ufb02"
	mbUpperCommon = "\u00de\u0391-\u03a9\u0386\u0388\u0389\u038a\u038c\u038e\u038f\u03aa\u03ab\u0401-\u042f"
	mbLowerCommon = "\u03b1-\u03c9\u03ac\u03ad\u03ae\u03af\u03b0\u0430-\u045f"
	mbBox         = "\u2502\u250c\u2510\u2518\u251c\u2524\u252c\u253c\u2550-\u256c\u2580\u2584\u2588\u258c\u2590\u2591\u2592\u2593"
)

// Category bits. initBadness gives every literal set of the rules a further
// bit of its own.
const (
	catCommon uint64 = 1 << iota
	catC1
	catBad
	catCurrency
	catStartP
	catEndP
	catNumeric
	catKaomoji
	catUpperAcc
	catLowerAcc
	catUpperCommon
	catLowerCommon
	catBox
)

// bElem is one position of a badness rule: a rune matches when it is in one
// of the categories cats, is one of the runes in lits, or satisfies fn. An
// optional element may also match nothing.
type bElem struct {
	cats uint64
	lits string
	fn   func(rune) bool
	opt  bool
}

// bRule is one alternative of BADNESS_RE: a sequence of elements, anchored
// at the start of the text when start is set.
type bRule struct {
	elems []bElem
	start bool
}

var (
	badnessOnce  sync.Once
	badnessCats  map[rune]uint64 // category and literal-set bits of each rune
	badnessRules []bRule
)

func isASCIILetter(r rune) bool { return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') }
func isASCIILower(r rune) bool  { return r >= 'a' && r <= 'z' }

// isPyWord is Python's \w for str patterns.
func isPyWord(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) }

func initBadness() {
	badnessCats = map[rune]uint64{}
	for _, c := range []struct {
		bit   uint64
		runes string
	}{
		{catCommon, mbCommon}, {catC1, mbC1}, {catBad, mbBad}, {catCurrency, mbCurrency},
		{catStartP, mbStartPunct}, {catEndP, mbEndPunct}, {catNumeric, mbNumeric}, {catKaomoji, mbKaomoji},
		{catUpperAcc, mbUpperAcc}, {catLowerAcc, mbLowerAcc}, {catUpperCommon, mbUpperCommon},
		{catLowerCommon, mbLowerCommon}, {catBox, mbBox},
	} {
		rs := []rune(c.runes)
		for i := 0; i < len(rs); i++ {
			lo, hi := rs[i], rs[i]
			if i+2 < len(rs) && rs[i+1] == '-' {
				hi = rs[i+2]
				i += 2
			}
			for r := lo; r <= hi; r++ {
				badnessCats[r] |= c.bit
			}
		}
	}
	cat := func(bits uint64) bElem { return bElem{cats: bits} }
	lit := func(s string) bElem { return bElem{lits: s} }
	fn := func(f func(rune) bool) bElem { return bElem{fn: f} }
	rule := func(e ...bElem) bRule { return bRule{elems: e} }

	const (
		accented = catLowerAcc | catUpperAcc
		punct    = catStartP | catEndP
	)
	arabic := bElem{cats: catCommon | catCurrency | catBad | catNumeric | catStartP, lits: "\u0178\u0160\u00ae\u00b0\u00b5\u00bb"}
	cyrillic := bElem{cats: catC1 | catBad | punct | catCurrency, lits: "\u00b0\u00b5"}
	greek := bElem{cats: catC1 | catBad | punct | catCurrency, lits: "\u00b0"}
	badnessRules = []bRule{
		rule(cat(catC1)),
		rule(cat(catBad|accented|catBox|punct|catCurrency|catNumeric), cat(catBad)),
		rule(fn(isASCIILetter), cat(catLowerCommon|catUpperCommon), cat(catBad)),
		rule(cat(catBad), cat(accented|catBox|punct|catCurrency|catNumeric)),
		rule(cat(catLowerAcc|catLowerCommon|catBox|catEndP|catCurrency|catNumeric), cat(catUpperAcc)),
		rule(cat(catBox|catEndP|catCurrency|catNumeric), cat(catLowerAcc)),
		rule(cat(catLowerAcc|catBox|catEndP), cat(catCurrency)),
		rule(fn(isPySpace), cat(catUpperAcc), cat(catCurrency)),
		rule(cat(catUpperAcc|catBox), cat(catNumeric)),
		rule(cat(accented|catBox|catCurrency|catEndP), cat(catStartP), cat(catNumeric)),
		rule(cat(accented|catCurrency|catNumeric|catBox), cat(catEndP), cat(catStartP)),
		rule(cat(catCurrency|catNumeric|catBox), cat(catStartP)),
		rule(fn(isASCIILower), cat(catUpperAcc), cat(catStartP|catCurrency)),
		rule(cat(catBox), cat(catKaomoji)),
		rule(cat(accented|catCurrency|catNumeric|punct), cat(catBox)),
		rule(cat(catBox), cat(catEndP)),
		rule(cat(accented), cat(catEndP), fn(isPyWord)),
		// œ not followed by an unaccented Latin letter
		rule(lit("\u0152\u0153"), fn(func(r rune) bool { return !isASCIILetter(r) })),
		// common windows-1252 two-character mojibake
		rule(lit("\u00c2\u00c3\u00ce\u00d0"), bElem{cats: punct, lits: "\u20ac\u0160\u0161\u00a2\u00a3\u0178\u017e\u00a0\u00ad\u00ae\u00a9\u00b0\u00b7\u00bb\u2013\u2014\u00b4"}),
		rule(lit("\u00d7"), lit("\u00b2\u00b3")),
		// windows-1252 mojibake of Arabic: four characters
		rule(lit("\u00d8\u00d9"), arabic, lit("\u00d8\u00d9"), arabic),
		// windows-1252 mojibake starting South Asian three-byte sequences
		rule(lit("\u00e0"), lit("\u00b2\u00b5\u00b9\u00bc\u00bd\u00be")),
		// MacRoman mojibake
		rule(lit("\u221a"), lit("\u00b1\u2202\u2020\u2260\u00ae\u2122\u00b4\u2264\u2265\u00a5\u00b5\u00f8")),
		rule(lit("\u2248"), lit("\u00b0\u00a2")),
		rule(lit("\u201a"), lit("\u00c4"), lit("\u00ec\u00ee\u00ef\u00f2\u00f4\u00fa\u00f9\u00fb\u2020\u00b0\u00a2\u03c0")),
		rule(lit("\u201a"), lit("\u00e2\u00f3"), lit("\u00e0\u00e4\u00b0\u00ea")),
		// windows-1251 mojibake
		rule(lit("\u0432"), lit("\u0402")),
		rule(lit("\u0412\u0413\u0420\u0421"), cyrillic, lit("\u0412\u0413\u0420\u0421")),
		rule(lit("\u0413"), lit("\u045e"), lit("\u0412"), lit("\u0402"), lit("\u0412"),
			fn(func(r rune) bool { return r != '\n' }), fn(func(r rune) bool { return r == ' ' || isASCIILetter(r) })),
		// windows-1252 encodings of 'à' and 'á', and of U+00A0 itself
		rule(lit("\u00c3"), lit("\u00a0\u00a1")),
		rule(fn(isASCIILower), bElem{fn: isPySpace, opt: true}, lit("\u00c3\u00c2"), lit(" ")),
		{elems: []bElem{lit("\u00c3\u00c2"), lit(" ")}, start: true},
		// Â encoding the very next character
		rule(bElem{cats: catEndP, fn: func(r rune) bool { return isASCIILower(r) || strings.ContainsRune(".,?!", r) }},
			lit("\u00c2"), bElem{cats: punct, lits: " "}),
		// windows-1253 mojibake
		rule(lit("\u03b2"), lit("\u20ac"), lit("\u2122\u00a0\u0386\u00ad\u00ae\u00b0")),
		rule(lit("\u0392\u0393\u039e\u039f"), greek, lit("\u0392\u0393\u039e\u039f")),
	}
	// Turn each literal set into a bit, so matching is a mask test.
	next := catBox << 1
	bits := map[string]uint64{}
	for k := range badnessRules {
		for j := range badnessRules[k].elems {
			e := &badnessRules[k].elems[j]
			if e.lits == "" {
				continue
			}
			bit, ok := bits[e.lits]
			if !ok {
				if next == 0 {
					panic("tokenizer: too many literal sets for the badness bit mask") // programmer error
				}
				bit, next = next, next<<1
				bits[e.lits] = bit
				for _, r := range e.lits {
					badnessCats[r] |= bit
				}
			}
			e.cats |= bit
			e.lits = ""
		}
	}
}

func (e *bElem) match(r rune, cats uint64) bool {
	return cats&e.cats != 0 || (e.fn != nil && e.fn(r))
}

// matchAt reports whether elems match rs starting at i (existence only, so
// an optional element is simply tried both ways).
func matchAt(elems []bElem, rs []rune, cats []uint64, i int) bool {
	if len(elems) == 0 {
		return true
	}
	e := &elems[0]
	if e.opt && matchAt(elems[1:], rs, cats, i) {
		return true
	}
	return i < len(rs) && e.match(rs[i], cats[i]) && matchAt(elems[1:], rs, cats, i+1)
}

// isBad is ftfy's is_bad: whether BADNESS_RE, a set of unlikely
// juxtapositions of the categories above plus sequences typical of
// windows-125x, MacRoman and Cyrillic/Greek code-page mojibake, matches
// anywhere in text. (badnessRegexp in the tests is the literal regexp
// transliteration this matcher is checked against.)
func isBad(text string) bool {
	badnessOnce.Do(initBadness)
	rs := []rune(text)
	cats := make([]uint64, len(rs))
	any := false
	for i, r := range rs {
		if c := badnessCats[r]; c != 0 {
			cats[i] = c
			any = any || r >= 0x80
		}
	}
	if !any { // every rule needs at least one non-ASCII character of the sets
		return false
	}
	for i := range rs {
		for k := range badnessRules {
			ru := &badnessRules[k]
			if ru.start && i != 0 {
				continue
			}
			if matchAt(ru.elems, rs, cats, i) {
				return true
			}
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// Character-level fixers

func hasC1(s string) bool {
	for _, r := range s {
		if r >= 0x80 && r <= 0x9F {
			return true
		}
	}
	return false
}

// fixC1Controls maps U+0080..U+009F to what the byte means in sloppy
// windows-1252.
func fixC1Controls(s string) string {
	if !hasC1(s) {
		return s
	}
	w := ftfyData().codecs[1]
	return strings.Map(func(r rune) rune {
		if r >= 0x80 && r <= 0x9F {
			return w.high[r-0x80]
		}
		return r
	}, s)
}

// latinLigatures is ftfy's LIGATURES table.
var latinLigatures = map[rune]string{
	'Ĳ': "IJ", 'ĳ': "ij", 'ŉ': "ʼn", 'Ǳ': "DZ", 'ǲ': "Dz", 'ǳ': "dz", 'Ǆ': "DŽ", 'ǅ': "Dž", 'ǆ': "dž",
	'Ǉ': "LJ", 'ǈ': "Lj", 'ǉ': "lj", 'Ǌ': "NJ", 'ǋ': "Nj", 'ǌ': "nj",
	'ﬀ': "ff", 'ﬁ': "fi", 'ﬂ': "fl", 'ﬃ': "ffi", 'ﬄ': "ffl", 'ﬅ': "ſt", 'ﬆ': "st",
}

// translate applies a rune -> string table to the non-ASCII runes of s.
func translate(s string, table func(rune) (string, bool)) string {
	if isASCII(s) {
		return s
	}
	var b strings.Builder
	changed := false
	for _, r := range s {
		if v, ok := table(r); ok {
			b.WriteString(v)
			changed = true
		} else {
			b.WriteRune(r)
		}
	}
	if !changed {
		return s
	}
	return b.String()
}

func fixLatinLigatures(s string) string {
	return translate(s, func(r rune) (string, bool) { v, ok := latinLigatures[r]; return v, ok })
}

// fixCharacterWidth replaces U+3000 and the fullwidth/halfwidth forms
// U+FF01..U+FFEF with their NFKC equivalents.
func fixCharacterWidth(s string) string {
	w := ftfyData().width
	return translate(s, func(r rune) (string, bool) {
		if r != 0x3000 && (r < 0xFF01 || r > 0xFFEF) {
			return "", false
		}
		v, ok := w[r]
		return v, ok
	})
}

func uncurlQuotes(s string) string {
	return translate(s, func(r rune) (string, bool) {
		switch {
		case r == 0x2BC || (r >= 0x2018 && r <= 0x201B):
			return "'", true
		case r >= 0x201C && r <= 0x201F:
			return `"`, true
		}
		return "", false
	})
}

func fixLineBreaks(s string) string {
	if strings.IndexByte(s, '\r') < 0 && isASCII(s) {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return translate(s, func(r rune) (string, bool) {
		if r == 0x2028 || r == 0x2029 || r == 0x85 {
			return "\n", true
		}
		return "", false
	})
}

// removeTerminalEscapes deletes ANSI escapes: ESC "[" (Unicode decimal
// digit or ";")* ASCII letter.
func removeTerminalEscapes(s string) string {
	if strings.IndexByte(s, 0x1B) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] == 0x1B && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) {
				r, size := utf8.DecodeRuneInString(s[j:])
				if r != ';' && !unicode.Is(unicode.Nd, r) {
					break
				}
				j += size
			}
			if j < len(s) && ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z')) {
				i = j + 1
				continue
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

func isFtfyControl(r rune) bool {
	return (r <= 0x08) || r == 0x0B || (r >= 0x0E && r <= 0x1F) || r == 0x7F ||
		(r >= 0x206A && r <= 0x206F) || r == 0xFEFF || (r >= 0xFFF9 && r <= 0xFFFC)
}

// removeControlChars deletes the control characters of ftfy's CONTROL_CHARS.
func removeControlChars(s string) string {
	for _, r := range s {
		if isFtfyControl(r) {
			return strings.Map(func(r rune) rune {
				if isFtfyControl(r) {
					return -1
				}
				return r
			}, s)
		}
	}
	return s
}

// ---------------------------------------------------------------------------
// NFC (Unicode 14.0.0, as Python 3.11's unicodedata.normalize("NFC", s))

const (
	hangulSBase  = 0xAC00
	hangulLBase  = 0x1100
	hangulVBase  = 0x1161
	hangulTBase  = 0x11A7
	hangulLCount = 19
	hangulVCount = 21
	hangulTCount = 28
	hangulNCount = hangulVCount * hangulTCount
	hangulSCount = hangulLCount * hangulNCount
)

func (t *ftfyTables) combiningClass(r rune) uint8 {
	i := sort.Search(len(t.ccc), func(i int) bool { return t.ccc[i].hi >= r })
	if i < len(t.ccc) && t.ccc[i].lo <= r {
		return t.ccc[i].class
	}
	return 0
}

func nfc(s string) string {
	if isASCII(s) {
		return s
	}
	t := ftfyData()
	// Canonical decomposition.
	d := make([]rune, 0, len(s))
	for _, r := range s {
		switch {
		case r >= hangulSBase && r < hangulSBase+hangulSCount:
			si := r - hangulSBase
			d = append(d, hangulLBase+si/hangulNCount, hangulVBase+(si%hangulNCount)/hangulTCount)
			if ti := si % hangulTCount; ti != 0 {
				d = append(d, hangulTBase+ti)
			}
		default:
			if x, ok := t.nfd[r]; ok {
				d = append(d, x...)
			} else {
				d = append(d, r)
			}
		}
	}
	// Canonical ordering: stable sort of each run of non-starters by class.
	cc := make([]uint8, len(d))
	for i, r := range d {
		cc[i] = t.combiningClass(r)
	}
	for i := 1; i < len(d); i++ {
		for j := i; j > 0 && cc[j] != 0 && cc[j-1] > cc[j]; j-- {
			d[j], d[j-1] = d[j-1], d[j]
			cc[j], cc[j-1] = cc[j-1], cc[j]
		}
	}
	// Canonical composition.
	out := d[:0]
	outCC := cc[:0]
	starter := -1
	for i, r := range d {
		c := cc[i]
		// r is blocked from the last starter unless it is adjacent to it or
		// every character in between has a lower class (they are sorted, so
		// checking the last one suffices).
		if starter >= 0 && (starter == len(out)-1 || outCC[len(outCC)-1] < c) {
			if comp, ok := t.compose(out[starter], r); ok {
				out[starter] = comp
				continue
			}
		}
		if c == 0 {
			starter = len(out)
		}
		out = append(out, r)
		outCC = append(outCC, c)
	}
	res := string(out)
	if res == s {
		return s
	}
	return res
}

func (t *ftfyTables) compose(a, b rune) (rune, bool) {
	if a >= hangulLBase && a < hangulLBase+hangulLCount && b >= hangulVBase && b < hangulVBase+hangulVCount {
		return hangulSBase + ((a-hangulLBase)*hangulVCount+(b-hangulVBase))*hangulTCount, true
	}
	if a >= hangulSBase && a < hangulSBase+hangulSCount && (a-hangulSBase)%hangulTCount == 0 &&
		b > hangulTBase && b < hangulTBase+hangulTCount {
		return a + (b - hangulTBase), true
	}
	r, ok := t.comp[[2]rune{a, b}]
	return r, ok
}
