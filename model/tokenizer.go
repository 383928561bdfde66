package model

// CLIP byte-level BPE tokenizer, byte-exact with transformers 4.36.2's slow
// CLIPTokenizer running with ftfy 6.1.1 installed (the reference setup of
// UNCLIP.md §2). The text clean-up ftfy performs lives in tokenizer_ftfy.go,
// its Unicode data in tokenizer_tables.go.

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// ContextLength is CLIP's fixed sequence length: bos + up to 75 content tokens
// + eos, padded to this length.
const ContextLength = 77

const (
	bosToken = "<|startoftext|>"
	eosToken = "<|endoftext|>" // also the unk token
	padToken = "!"             // Karlo's pad token, a special added token with id 0

	// maxMerges is how many merges.txt lines after the header transformers
	// reads: 49152 - 256 - 2.
	maxMerges = 49152 - 256 - 2

	// maxBPECache bounds the per-word BPE cache; it is cleared when full.
	maxBPECache = 1 << 16
)

// Tokenizer is the CLIP BPE tokenizer. It is safe for concurrent use.
//
// Encoding a prompt mirrors transformers' slow CLIPTokenizer:
//
//  1. The text is split on the added special tokens "<|startoftext|>",
//     "<|endoftext|>" and the pad token "!"; each occurrence becomes its own
//     token (so every "!" is id 0, never the BPE token "!</w>").
//  2. Each piece between them is cleaned with ftfy.fix_text (see ftfyFixText),
//     whitespace runs (Python str.isspace) become one space and the ends are
//     trimmed, then it is lower-cased with Python's str.lower (full mapping:
//     U+0130 -> "i̇", final sigma).
//  3. The piece is split with CLIP's pattern
//     <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//     (case-insensitive, leftmost-first; see preTokenize).
//  4. Each word is UTF-8 encoded, its bytes mapped through the byte-to-unicode
//     table, and merged by BPE with "</w>" on the last symbol; symbols are
//     looked up in the vocabulary (missing -> unk = eos).
//
// Input that is not valid UTF-8 is decoded like Python's
// bytes.decode("utf-8", errors="replace"): every maximal invalid subpart
// (an invalid byte, or a truncated/ill-formed multi-byte sequence) becomes one
// U+FFFD.
type Tokenizer struct {
	encoder   map[string]int
	ranks     map[bpePair]int
	vocabSize int
	bos, eos  int
	pad, unk  int
	byteEnc   [256]string // byte -> its one-rune string in the byte-level alphabet

	mu    sync.RWMutex
	cache map[string][]int // byte-encoded word -> ids
}

type bpePair struct{ a, b string }

// NewTokenizer builds a tokenizer from the contents of vocab.json (token ->
// id) and merges.txt (a "#version" header line, then one "a b" merge per
// line, highest priority first).
func NewTokenizer(vocabJSON, merges []byte) (*Tokenizer, error) {
	var enc map[string]int
	if err := json.Unmarshal(vocabJSON, &enc); err != nil {
		return nil, fmt.Errorf("vocab.json: %w", err)
	}
	if len(enc) == 0 {
		return nil, fmt.Errorf("vocab.json: empty vocabulary")
	}
	t := &Tokenizer{encoder: enc, cache: map[string][]int{}}
	maxID := -1
	for tok, id := range enc {
		if id < 0 {
			return nil, fmt.Errorf("vocab.json: token %q has negative id %d", tok, id)
		}
		if id > maxID {
			maxID = id
		}
	}
	t.vocabSize = maxID + 1
	var ok bool
	var missing []string
	if t.bos, ok = enc[bosToken]; !ok {
		missing = append(missing, bosToken)
	}
	if t.eos, ok = enc[eosToken]; !ok {
		missing = append(missing, eosToken)
	}
	if t.pad, ok = enc[padToken]; !ok {
		missing = append(missing, padToken)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("vocab.json: missing special tokens %q", missing)
	}
	t.unk = t.eos

	// Byte-to-unicode table: printable Latin-1 bytes stand for themselves,
	// the other 68 bytes map to U+0100.. in increasing byte order.
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255) {
			t.byteEnc[b] = string(rune(b))
		} else {
			t.byteEnc[b] = string(rune(256 + n))
			n++
		}
	}

	// merges.txt: transformers does merges.strip().split("\n")[1:48895].
	text := strings.TrimFunc(string(merges), isPySpace)
	lines := strings.Split(text, "\n")
	if len(lines) < 2 {
		return nil, fmt.Errorf("merges.txt: no merges after the header line")
	}
	lines = lines[1:]
	if len(lines) > maxMerges {
		lines = lines[:maxMerges]
	}
	t.ranks = make(map[bpePair]int, len(lines))
	for i, line := range lines {
		f := strings.FieldsFunc(line, isPySpace)
		if len(f) != 2 {
			return nil, fmt.Errorf("merges.txt: line %d: malformed merge %q (want two space-separated symbols)", i+2, line)
		}
		t.ranks[bpePair{f[0], f[1]}] = i // like dict(zip(merges, range)): a repeated merge keeps its last rank
	}
	return t, nil
}

// VocabSize returns the number of token ids (largest id + 1).
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// Encode returns the ContextLength ids and attention mask for text:
// [bos, up to 75 content ids, eos, pad...] with mask 1 for bos, content and
// eos and 0 for padding. Longer prompts are truncated (eos stays at index 76).
func (t *Tokenizer) Encode(text string) (ids []int, mask []int) {
	content := t.contentIDs(text)
	if len(content) > ContextLength-2 {
		content = content[:ContextLength-2]
	}
	ids = make([]int, ContextLength)
	mask = make([]int, ContextLength)
	ids[0] = t.bos
	copy(ids[1:], content)
	ids[len(content)+1] = t.eos
	for i := len(content) + 2; i < ContextLength; i++ {
		ids[i] = t.pad
	}
	for i := 0; i < len(content)+2; i++ {
		mask[i] = 1
	}
	return ids, mask
}

// EncodeUntruncated returns [bos, all content ids, eos] without truncation or
// padding (its length tells whether Encode truncated the prompt).
func (t *Tokenizer) EncodeUntruncated(text string) []int {
	content := t.contentIDs(text)
	ids := make([]int, 0, len(content)+2)
	ids = append(ids, t.bos)
	ids = append(ids, content...)
	return append(ids, t.eos)
}

// contentIDs tokenizes text without bos/eos.
func (t *Tokenizer) contentIDs(text string) []int {
	text = decodeUTF8Replace(text)
	var ids []int
	for len(text) > 0 {
		i, tok := nextSpecial(text)
		if i < 0 {
			return t.appendSegment(ids, text)
		}
		if i > 0 {
			ids = t.appendSegment(ids, text[:i])
		}
		ids = append(ids, t.encoder[tok])
		text = text[i+len(tok):]
	}
	return ids
}

// nextSpecial finds the leftmost added special token in s (the tokens share
// no prefixes, so leftmost is also what transformers' trie picks).
func nextSpecial(s string) (int, string) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '!':
			return i, padToken
		case '<':
			if strings.HasPrefix(s[i:], bosToken) {
				return i, bosToken
			}
			if strings.HasPrefix(s[i:], eosToken) {
				return i, eosToken
			}
		}
	}
	return -1, ""
}

// appendSegment runs CLIPTokenizer._tokenize on one piece of text between
// special tokens and appends the resulting ids.
func (t *Tokenizer) appendSegment(ids []int, seg string) []int {
	s := pyLower(whitespaceClean(ftfyFixText(seg)))
	for _, word := range preTokenize(s) {
		ids = append(ids, t.bpeIDs(word)...)
	}
	return ids
}

// whitespaceClean is CLIP's whitespace_clean: re.sub(r"\s+", " ", s).strip()
// with Python's Unicode whitespace.
func whitespaceClean(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if isPySpace(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// preTokenize splits lower-cased text with CLIP's pattern (regex module
// 2022.10.31, IGNORECASE):
//
//	<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//
// taking all leftmost-first matches; characters no alternative matches are
// dropped. IGNORECASE lets the literals match case variants ("'ſ" matches
// 's), leaves [\p{L}] and [\p{N}] unchanged, and makes the negated class
// reject U+0345 (whose case variants are letters), so U+0345 is dropped like
// whitespace. regex's \s is Unicode White_Space: Python's str.isspace minus
// U+001C..U+001F.
func preTokenize(s string) []string {
	rs := []rune(s)
	var words []string
	other := func(r rune) bool { // [^\s\p{L}\p{N}] under IGNORECASE
		return !isRegexSpace(r) && !unicode.IsLetter(r) && !unicode.IsNumber(r) && r != 0x345
	}
	for i := 0; i < len(rs); {
		r := rs[i]
		if n := matchLiteralCI(rs[i:], bosToken); n > 0 {
			words = append(words, string(rs[i:i+n]))
			i += n
			continue
		}
		if n := matchLiteralCI(rs[i:], eosToken); n > 0 {
			words = append(words, string(rs[i:i+n]))
			i += n
			continue
		}
		if r == '\'' {
			matched := false
			for _, c := range [...]string{"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"} {
				if n := matchLiteralCI(rs[i:], c); n > 0 {
					words = append(words, string(rs[i:i+n]))
					i += n
					matched = true
					break
				}
			}
			if matched {
				continue
			}
		}
		j := i + 1
		switch {
		case unicode.IsLetter(r):
			for j < len(rs) && unicode.IsLetter(rs[j]) {
				j++
			}
		case unicode.IsNumber(r):
			// one digit per word
		case other(r):
			for j < len(rs) && other(rs[j]) {
				j++
			}
		default: // whitespace or U+0345: no alternative matches here
			i++
			continue
		}
		words = append(words, string(rs[i:j]))
		i = j
	}
	return words
}

// isRegexSpace is the regex module's \s (Unicode White_Space).
func isRegexSpace(r rune) bool { return isPySpace(r) && (r < 0x1C || r > 0x1F) }

// matchLiteralCI returns len(lit) if rs starts with lit under simple case
// folding, else 0.
func matchLiteralCI(rs []rune, lit string) int {
	n := 0
	for _, c := range lit {
		if n >= len(rs) || !foldEq(rs[n], c) {
			return 0
		}
		n++
	}
	return n
}

// foldEq reports whether r and c are equal under simple case folding.
func foldEq(r, c rune) bool {
	if r == c {
		return true
	}
	for f := unicode.SimpleFold(c); f != c; f = unicode.SimpleFold(f) {
		if f == r {
			return true
		}
	}
	return false
}

// bpeIDs returns the vocabulary ids of one pre-tokenized word (cached).
func (t *Tokenizer) bpeIDs(word string) []int {
	var b strings.Builder
	for i := 0; i < len(word); i++ {
		b.WriteString(t.byteEnc[word[i]])
	}
	key := b.String()
	t.mu.RLock()
	ids, ok := t.cache[key]
	t.mu.RUnlock()
	if ok {
		return ids
	}
	syms := t.bpe(key)
	ids = make([]int, len(syms))
	for i, s := range syms {
		id, ok := t.encoder[s]
		if !ok {
			id = t.unk
		}
		ids[i] = id
	}
	t.mu.Lock()
	if len(t.cache) >= maxBPECache {
		t.cache = map[string][]int{}
	}
	t.cache[key] = ids
	t.mu.Unlock()
	return ids
}

// bpe is CLIPTokenizer.bpe: split token into characters with "</w>" on the
// last, then repeatedly merge every occurrence of the lowest-ranked adjacent
// pair until no pair is in the merge table.
func (t *Tokenizer) bpe(token string) []string {
	if token == bosToken || token == eosToken { // preloaded in transformers' cache
		return []string{token}
	}
	word := make([]string, 0, utf8.RuneCountInString(token))
	for _, r := range token {
		word = append(word, string(r))
	}
	if len(word) == 0 {
		return nil
	}
	word[len(word)-1] += "</w>"
	for len(word) > 1 {
		best, bestRank := -1, 0
		for i := 0; i+1 < len(word); i++ {
			if r, ok := t.ranks[bpePair{word[i], word[i+1]}]; ok && (best < 0 || r < bestRank) {
				best, bestRank = i, r
			}
		}
		if best < 0 {
			break
		}
		first, second := word[best], word[best+1]
		merged := word[:0:0]
		for i := 0; i < len(word); {
			if i+1 < len(word) && word[i] == first && word[i+1] == second {
				merged = append(merged, first+second)
				i += 2
			} else {
				merged = append(merged, word[i])
				i++
			}
		}
		word = merged
	}
	return word
}

// decodeUTF8Replace returns s with every maximal ill-formed UTF-8 subpart
// replaced by U+FFFD, like Python's bytes.decode("utf-8", errors="replace").
func decodeUTF8Replace(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError || size > 1 {
			b.WriteString(s[i : i+size])
			i += size
			continue
		}
		b.WriteRune(utf8.RuneError)
		i += maximalSubpart(s[i:])
	}
	return b.String()
}

// maximalSubpart returns the length of the maximal ill-formed subpart at the
// start of s (Unicode §3.9 "best practice", which CPython follows): a valid
// lead byte plus the continuation bytes that fit it, or one byte.
func maximalSubpart(s string) int {
	lo, hi := byte(0x80), byte(0xBF)
	need := 0
	switch c := s[0]; {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	i := 1
	for k := 0; k < need && i < len(s); k++ {
		b := s[i]
		if k > 0 {
			lo, hi = 0x80, 0xBF
		}
		if b < lo || b > hi {
			break
		}
		i++
	}
	return i
}
