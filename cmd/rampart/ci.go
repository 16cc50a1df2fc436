package main

import (
	"time"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/ci"
)

// CI job identity (docs/ci.md): a job exchanges its CI system's ID token for a pipeline token;
// people with a trigger grant start pipeline runs.

func newCICmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "ci", Short: "CI job identity: exchange a CI job's ID token for a pipeline token"}
	cmd.AddCommand(newCILogin(g))
	return cmd
}

// ciLoggedIn is what ci login prints under -o json or yaml.
type ciLoggedIn struct {
	Token     string    `json:"token"`
	Subject   string    `json:"subject"`
	ExpiresAt time.Time `json:"expires_at"`
	Run       ci.Run    `json:"run"`
}

func newCILogin(g *globals) *cobra.Command {
	var file, env, audience string
	cmd := &cobra.Command{
		Use:   "login [--id-token-file F | --id-token-env VAR] [--audience AUD]",
		Short: "Inside a CI job: exchange the job's ID token for a pipeline token and print it",
		Long: `Inside a CI job, exchange the OpenID Connect ID token the CI system issued the job for a
Rampart token of the pipeline ci:<issuer>/<repository>/<workflow>, valid at most 15 minutes, and
print it (use it as RAMPART_TOKEN). The ID token is read from --id-token-file, or
--id-token-env (GitLab CI: an id_tokens variable with aud: rampart), or else asked of GitHub
Actions for --audience (ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN: the job needs permissions:
id-token: write). A refusal names the condition that failed and exits 3 (denied).`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file != "" && env != "" {
				return usageErr("--id-token-file and --id-token-env are alternatives; give one")
			}
			tok, err := ci.JobToken(cmd.Context(), ci.JobTokenSource{File: file, Env: env, Audience: audience})
			if err != nil {
				return usageErr("%v", err)
			}
			res, err := api.NewClient(g.addr, "").CIExchange(cmd.Context(), tok)
			if err != nil {
				return err
			}
			return g.done(ciLoggedIn{Token: res.Token, Subject: res.Subject, ExpiresAt: res.ExpiresAt, Run: res.Run}, "%s\n", res.Token)
		},
	}
	cmd.Flags().StringVar(&file, "id-token-file", "", "file holding the job's ID token")
	cmd.Flags().StringVar(&env, "id-token-env", "", "environment variable holding the job's ID token (GitLab id_tokens)")
	cmd.Flags().StringVar(&audience, "audience", "rampart", "audience to ask GitHub Actions for (the CIIssuer's audience)")
	return cmd
}

func newPipelineCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "pipeline", Short: "Start runs of CI pipelines you hold a trigger grant on"}
	var ref string
	trigger := &cobra.Command{
		Use:   "trigger NAME --ref REF",
		Short: "Start a run of pipeline NAME (<repository>/<workflow>) at REF through its CI system",
		Long: `Start a run of pipeline NAME (<repository>/<workflow>, e.g. acme/infra/deploy.yml) at REF (a full
ref, e.g. refs/heads/main) through its CI system's dispatch API (GitHub's workflow_dispatch).
You need an active trigger grant on pipelines/NAME (rampart request create); the trigger is
recorded in the ledger before the CI system is called.`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ref == "" {
				return usageErr("--ref is required: the full ref to run at (e.g. refs/heads/main)")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.TriggerPipeline(cmd.Context(), args[0], ref); err != nil {
				return err
			}
			return g.done(api.TriggerResponse{Pipeline: args[0], Ref: ref, Status: "dispatched"}, "Dispatched %s at %s.\n", args[0], ref)
		},
	}
	trigger.Flags().StringVar(&ref, "ref", "", "the full ref to run at (e.g. refs/heads/main)")
	cmd.AddCommand(trigger)
	return cmd
}
