// compose-check loads a compose file with compose-go, the library `docker compose` itself uses to
// read, interpolate, validate (compose-spec JSON schema) and normalise a project, and prints the
// resolved model as JSON: `docker compose config --format json` without Docker. The tests of the
// docker stack run it (tests/platform/test_compose.py), so the file is checked by Compose's own
// model on machines without a Docker engine or the compose plugin.
//
//	compose-check --env-file infra/.env -f infra/docker-compose.yml [-p NAME] [--strict]
//
// --strict turns every `${VAR}` that is neither in the environment nor in an env file into an
// error (Compose only warns and substitutes an empty string). Exit 0 and the JSON model on stdout
// when the file is valid; exit 1 and Compose's own error message on stderr otherwise.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/sirupsen/logrus"
	"regexp"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var files, envFiles list
	flag.Var(&files, "f", "compose file (repeatable)")
	flag.Var(&envFiles, "env-file", "env file (repeatable); the environment wins over it")
	name := flag.String("p", "", "project name (default: the file's `name:`)")
	strict := flag.Bool("strict", false, "fail on a variable that is not set anywhere")
	flag.Parse()
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "compose-check: name a compose file with -f")
		os.Exit(2)
	}
	logrus.SetOutput(io.Discard) // warnings are reported below, as errors when --strict

	unset := &unsetHook{names: map[string]bool{}}
	logrus.AddHook(unset)
	opts, err := cli.NewProjectOptions(files,
		cli.WithOsEnv,
		cli.WithEnvFiles(envFiles...),
		cli.WithDotEnv,
		cli.WithName(*name),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		fail(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	if len(unset.names) > 0 {
		names := make([]string, 0, len(unset.names))
		for key := range unset.names {
			names = append(names, key)
		}
		sort.Strings(names)
		msg := fmt.Sprintf("variables not set (neither in the environment nor in an env file): %s",
			strings.Join(names, ", "))
		if *strict {
			fail(fmt.Errorf("%s", msg))
		}
		fmt.Fprintln(os.Stderr, "compose-check: warning: "+msg)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(out)
	fmt.Println()
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "compose-check: %v\n", err)
	os.Exit(1)
}

// unsetHook collects the variables Compose warns about ("The "X" variable is not set...").
type unsetHook struct{ names map[string]bool }

var unsetWarning = regexp.MustCompile(`^The "([^"]+)" variable is not set`)

func (h *unsetHook) Levels() []logrus.Level { return []logrus.Level{logrus.WarnLevel} }

func (h *unsetHook) Fire(entry *logrus.Entry) error {
	if m := unsetWarning.FindStringSubmatch(entry.Message); m != nil {
		h.names[m[1]] = true
	}
	return nil
}
