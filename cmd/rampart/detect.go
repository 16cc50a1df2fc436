package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/internal/text"
	"rampart.dev/rampart/policy"
)

func newDetectCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "detect", Short: "Detection rules over the ledger: try rules on exported entries, or replay the server's ledger"}
	cmd.AddCommand(newDetectTest(g), newDetectBacktest(g))
	return cmd
}

// detectTestResult is what `rampart detect test -o json` prints.
type detectTestResult struct {
	Rules    []string        `json:"rules"`
	Entries  int             `json:"entries"`
	Firings  []detect.Firing `json:"firings"`
	Skipped  int             `json:"skipped"`
	EvalErrs uint64          `json:"eval_errors"`
}

func newDetectTest(g *globals) *cobra.Command {
	var events string
	cmd := &cobra.Command{
		Use:   "test RULES... --events FILE",
		Short: "Replay exported ledger entries through detection rules and print the firings",
		Long: `Load the DetectionRule documents of RULES (policy directories or rule files; documents of
other kinds are skipped, 'rampart policy validate' checks them) and replay the entries of FILE
through them in order, as the server does: FILE is JSON lines of ledger entries, as 'rampart
audit export' writes them ("-" for standard input). Prints every firing with its evidence (the
entries' sequence numbers). Exits 1 if a rule does not load (every error with
file:line:column) or an entry cannot be read (with its line); 0 otherwise, whether rules fired
or not. Offline: no server is needed. See docs/detection.md.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErr("name at least one rule file or policy directory")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if events == "" {
				return usageErr("--events FILE is required: ledger entries as JSON lines ('rampart audit export' output)")
			}
			rules, err := loadDetectionRules(args)
			if err != nil {
				return err
			}
			var in io.Reader = os.Stdin
			if events != "-" {
				f, err := os.Open(events)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			res, err := replayEntries(rules, in, events)
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, res, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "RULE\tSEVERITY\tKEY\tSUBJECT\tCOUNT\tFIRST\tLAST\tEVIDENCE\tMODE")
				for _, f := range res.Firings {
					mode := f.Mode
					if f.Learning {
						mode += " (learning)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", f.Rule, f.Severity, cell(f.Key), cell(f.Subject), f.Count,
						f.First.Format("2006-01-02T15:04:05Z"), f.Last.Format("2006-01-02T15:04:05Z"), evidence(f.Evidence), mode)
				}
				fmt.Fprintf(tw, "%d firings of %d rules over %d entries", len(res.Firings), len(res.Rules), res.Entries)
				if res.Skipped > 0 {
					fmt.Fprintf(tw, " (%d of detection's own entries not fed to rules)", res.Skipped)
				}
				if res.EvalErrs > 0 {
					fmt.Fprintf(tw, "; %d evaluations failed (cost limit or missing details key) and did not match", res.EvalErrs)
				}
				fmt.Fprintln(tw)
			})
		},
	}
	cmd.Flags().StringVar(&events, "events", "", "ledger entries as JSON lines ('rampart audit export' output), - for standard input")
	return cmd
}

// loadDetectionRules reads the rule files and directories named.
func loadDetectionRules(paths []string) ([]*policy.DetectionRule, error) {
	var files []policy.File
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if fi.IsDir() {
			fs, err := policy.ReadFS(os.DirFS(p))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			for _, f := range fs {
				f.Name = strings.TrimSuffix(p, "/") + "/" + f.Name
				files = append(files, f)
			}
			continue
		}
		if fi.Size() > policy.MaxFileSize {
			return nil, fmt.Errorf("%s: %d bytes is over the %d byte limit for a policy file", p, fi.Size(), policy.MaxFileSize)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		files = append(files, policy.File{Name: p, Data: data})
	}
	rules, err := policy.ParseDetectionRules(files)
	if err != nil {
		return nil, fmt.Errorf("detection rules are invalid:\n%w", err)
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("%s: no DetectionRule documents found; a rule starts with apiVersion: %s and kind: DetectionRule", strings.Join(paths, ", "), policy.APIVersion)
	}
	return rules, nil
}

// replayEntries feeds JSON lines of ledger entries to an engine over rules.
func replayEntries(rules []*policy.DetectionRule, in io.Reader, name string) (*detectTestResult, error) {
	e, err := detect.NewEngine(rules, detect.Options{})
	if err != nil {
		return nil, err
	}
	res := &detectTestResult{Firings: []detect.Firing{}}
	for _, r := range rules {
		res.Rules = append(res.Rules, r.Name)
	}
	br := bufio.NewReaderSize(in, 64<<10)
	for line := 1; ; line++ {
		b, err := readLine(br, detect.MaxEntryBytes)
		if errors.Is(err, io.EOF) && len(b) == 0 {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		ev, perr := detect.ParseEntry(-1, b)
		if perr != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, perr)
		}
		res.Entries++
		if detect.Own(ev.Code) {
			res.Skipped++
			continue
		}
		res.Firings = append(res.Firings, e.Process(ev)...)
	}
	res.EvalErrs = e.Stats().EvalErrors
	return res, nil
}

// readLine reads one line (without its newline) of at most max bytes.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max+1 {
			return nil, fmt.Errorf("the line is longer than %d bytes; a ledger entry is at most that", max)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return []byte(strings.TrimRight(string(line), "\r\n")), err
	}
}

// cell makes a value printable in one table cell: a key or subject comes from the entries, and
// no control character in them reaches the terminal.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return text.Escape(s)
}

func evidence(seqs []int64) string {
	var b strings.Builder
	for i, s := range seqs {
		if i == 5 {
			fmt.Fprintf(&b, ",…(%d)", len(seqs))
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, s)
	}
	return b.String()
}
