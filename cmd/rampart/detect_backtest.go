package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/internal/text"
	"rampart.dev/rampart/policy"
)

// Backtest is what `rampart detect backtest` prints: the firings the rules would have raised
// over the ledger's entries from From to To.
type Backtest struct {
	Since   time.Time       `json:"since"`
	From    int64           `json:"from"`
	To      int64           `json:"to"`
	Entries int             `json:"entries"`
	Rules   []string        `json:"rules"`
	Firings []detect.Firing `json:"firings"`
}

func newDetectBacktest(g *globals) *cobra.Command {
	var since, rulesDir string
	var maxKeys int
	cmd := &cobra.Command{
		Use:   "backtest --since D --rules DIR",
		Short: "Replay the ledger since D through the detection rules of a policy and print what would fire (admins and auditors; nothing is written)",
		Long: `Read the server's ledger from the first entry at or after --since (a duration before now, such
as 24h or 168h, or an RFC 3339 time) to its end, evaluate the detection rules of the policy in
--rules DIR (a policy directory: try a new or changed rule before it is merged) from an empty
state, and print every firing with its evidence (ledger sequence numbers). Detection's own
entries are not evaluated. Nothing is written: no alert, no response.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if since == "" {
				return usageErr("--since is required: a duration before now (24h) or an RFC 3339 time")
			}
			from, err := sinceFlag(since, time.Now())
			if err != nil {
				return usageErr("--since: %v", err)
			}
			if rulesDir == "" {
				return usageErr("--rules is required: the policy directory whose detection rules to replay (the server's policy checkout, or a branch of it)")
			}
			pol, err := policy.Load(os.DirFS(rulesDir))
			if err != nil {
				return fmt.Errorf("policy %s is invalid:\n%w", rulesDir, err)
			}
			if len(pol.DetectionRules) == 0 {
				return fmt.Errorf("policy %s has no DetectionRule documents: nothing to replay", rulesDir)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			b, err := backtest(cmd.Context(), c, pol.DetectionRules, from, maxKeys)
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, b, func(tw *tabwriter.Writer) { printBacktest(tw, b) })
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "replay entries from this time on: a duration before now (24h) or an RFC 3339 time")
	cmd.Flags().StringVar(&rulesDir, "rules", "", "the policy directory whose detection rules to replay")
	cmd.Flags().IntVar(&maxKeys, "max-keys", 0, "keys each rule keeps state for (default as the server: 100000)")
	return cmd
}

// sinceFlag reads an RFC 3339 time or a duration before now.
func sinceFlag(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("%q is neither a positive duration (24h, 168h) nor an RFC 3339 time (2026-12-01T00:00:00Z)", v)
	}
	return now.Add(-d), nil
}

// entryTime reads an entry's time (Unix milliseconds).
func entryTime(data []byte) (time.Time, error) {
	var e struct {
		Time int64 `json:"time"`
	}
	if err := json.Unmarshal(data, &e); err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(e.Time), nil
}

// backtest finds the first entry at or after since (a binary search: entries are in commit
// order, and their times with it, give or take replicas' clocks) and replays from there.
func backtest(ctx context.Context, c *api.Client, rules []*policy.DetectionRule, since time.Time, maxKeys int) (Backtest, error) {
	b := Backtest{Since: since, Firings: []detect.Firing{}}
	for _, r := range rules {
		b.Rules = append(b.Rules, r.Name)
	}
	cp, err := c.Checkpoint(ctx)
	if err != nil {
		return b, err
	}
	size := int64(cp.Size)
	at := func(seq int64) (time.Time, error) {
		var t time.Time
		err := c.Entries(ctx, uint64(seq), 1, func(_ uint64, data []byte) error {
			var err error
			t, err = entryTime(data)
			return err
		})
		return t, err
	}
	lo, hi := int64(0), size
	for lo < hi {
		mid := lo + (hi-lo)/2
		t, err := at(mid)
		if err != nil {
			return b, fmt.Errorf("read ledger entry %d: %w", mid, err)
		}
		if t.Before(since) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	b.From, b.To = lo, size
	e, err := detect.NewEngine(rules, detect.Options{MaxKeys: maxKeys})
	if err != nil {
		return b, err
	}
	if lo >= size {
		return b, nil
	}
	err = c.Entries(ctx, uint64(lo), uint64(size-lo), func(seq uint64, data []byte) error {
		b.Entries++
		ev, err := detect.ParseEntry(int64(seq), data)
		if err != nil {
			return nil // an entry that does not parse matches nothing, as on the server
		}
		b.Firings = append(b.Firings, e.Process(ev)...)
		return nil
	})
	return b, err
}

func printBacktest(tw *tabwriter.Writer, b Backtest) {
	fmt.Fprintf(tw, "Replayed entries %d to %d (%d entries since %s) through %d rules: %d firings.\n\n",
		b.From, b.To-1, b.Entries, b.Since.Local().Format(time.DateTime), len(b.Rules), len(b.Firings))
	if len(b.Firings) == 0 {
		return
	}
	fmt.Fprintln(tw, "RULE\tSEVERITY\tKEY\tCOUNT\tFIRST\tLAST\tEVIDENCE")
	for _, f := range b.Firings {
		ev := make([]string, len(f.Evidence))
		for i, s := range f.Evidence {
			ev[i] = fmt.Sprint(s)
		}
		learning := ""
		if f.Learning {
			learning = " (learning)"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%d\t%s\t%s\t%s\n", text.Escape(f.Rule), learning, f.Severity, text.Escape(f.Key), f.Count,
			f.First.Local().Format(time.DateTime), f.Last.Local().Format(time.DateTime), strings.Join(ev, ","))
	}
}
