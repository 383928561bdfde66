package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress reports denoising steps on stderr. On a terminal it draws one
// bar per stage, redrawn in place (\r) with step/total, seconds per step
// and ETA, and ends the line when the stage is done; elsewhere (a pipe, a
// log file) it writes one plain line per step. A nil *progress prints
// nothing (--quiet).
type progress struct {
	w   io.Writer
	tty bool
	now func() time.Time // time.Now; tests replace it

	prefix     string    // "[2/3] " when a run has several generations
	stage      string    // the stage being drawn
	stageStart time.Time // when stage began: the previous event
	last       time.Time // the previous event (job start or step)
	open       bool      // tty: a bar without its newline is on screen
}

func newProgress(w io.Writer, tty bool) *progress {
	return &progress{w: w, tty: tty, now: time.Now}
}

// startJob begins a generation; prefix labels its lines.
func (p *progress) startJob(prefix string) {
	if p == nil {
		return
	}
	p.end()
	p.prefix = prefix
	p.stage = ""
	p.last = p.now()
}

// step is model.Options.Progress: called after each denoising step. A
// stage's first step includes the work between stages (text encoding,
// text_proj, upsampling).
func (p *progress) step(stage string, step, total int) {
	if p == nil {
		return
	}
	now := p.now()
	if stage != p.stage {
		p.end()
		p.stage, p.stageStart = stage, p.last
	}
	p.last = now
	elapsed := now.Sub(p.stageStart).Seconds()
	per := elapsed / float64(max(step, 1))
	eta := per * float64(total-step)
	if !p.tty {
		fmt.Fprintf(p.w, "%s%-9s %3d/%-3d %7.2f s/step  ETA %s\n", p.prefix, stage, step, total, per, clock(eta))
		return
	}
	const width = 24
	fill := width * step / max(total, 1)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	if fill > 0 && fill < width {
		bar = strings.Repeat("=", fill-1) + ">" + strings.Repeat(" ", width-fill)
	}
	tail := "ETA " + clock(eta)
	if step >= total {
		tail = "took " + clock(elapsed)
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s%-9s [%s] %3d/%-3d %7.2f s/step  %s", p.prefix, stage, bar, step, total, per, tail)
	p.open = step < total
	if !p.open {
		fmt.Fprintln(p.w)
	}
}

// end finishes a bar left open (an interrupted or failed stage).
func (p *progress) end() {
	if p != nil && p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
}

// clock formats seconds as 4.2s, 1:05 or 1:02:03.
func clock(s float64) string {
	if s < 10 {
		return fmt.Sprintf("%.1fs", s)
	}
	t := int(s + 0.5)
	if t < 3600 {
		return fmt.Sprintf("%d:%02d", t/60, t%60)
	}
	return fmt.Sprintf("%d:%02d:%02d", t/3600, t/60%60, t%60)
}
