package ci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// JobTokenSource says where a CI job finds its ID token, for `rampart ci login`: a file, an
// environment variable, or GitHub Actions' token request endpoint
// (ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN, present when the workflow
// has permissions: id-token: write).
type JobTokenSource struct {
	// File is a file holding the token (a GitLab id_tokens file variable, a mounted token).
	File string
	// Env is an environment variable holding the token (a GitLab id_tokens variable).
	Env string
	// Audience is asked of GitHub Actions.
	Audience string
	// Getenv reads the environment (os.Getenv if nil); Client calls GitHub (10 s timeout if nil).
	Getenv func(string) string
	Client *http.Client
}

// JobToken returns the job's ID token: from File, else Env, else GitHub Actions' endpoint. With
// none of them it says what to configure.
func JobToken(ctx context.Context, s JobTokenSource) (string, error) {
	getenv := s.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	switch {
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("read the ID token: %w", err)
		}
		if len(b) > MaxTokenSize {
			return "", fmt.Errorf("%s is %d bytes; an ID token is at most %d", s.File, len(b), MaxTokenSize)
		}
		return strings.TrimSpace(string(b)), nil
	case s.Env != "":
		v := strings.TrimSpace(getenv(s.Env))
		if v == "" {
			return "", fmt.Errorf("the environment variable %s is empty; in GitLab CI declare it under id_tokens with aud: rampart", s.Env)
		}
		return v, nil
	}
	reqURL, reqTok := getenv("ACTIONS_ID_TOKEN_REQUEST_URL"), getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	if reqURL == "" || reqTok == "" {
		return "", errors.New("no ID token: pass --id-token-file or --id-token-env (GitLab: an id_tokens variable), or in GitHub Actions give the job permissions: id-token: write")
	}
	u, err := url.Parse(reqURL)
	if err != nil {
		return "", fmt.Errorf("ACTIONS_ID_TOKEN_REQUEST_URL: %w", err)
	}
	q := u.Query()
	q.Set("audience", s.Audience)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, "GET", u.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+reqTok)
	client := s.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("ask GitHub Actions for an ID token: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("GitHub Actions' ID token endpoint answered %d", resp.StatusCode)
	}
	var out struct {
		Value string `json:"value"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, MaxTokenSize+1024)).Decode(&out); err != nil || out.Value == "" {
		return "", fmt.Errorf("GitHub Actions' ID token endpoint answered no token (%v)", err)
	}
	return out.Value, nil
}
