// Command composecheck validates Compose files without a Docker engine.
//
// It loads the files the way `docker compose config` does (compose-go: schema,
// interpolation from the OS environment and the project's .env, consistency of
// networks, volumes and depends_on), then rejects every pulled image that is not
// pinned: no tag, or the tag `latest`. Services that are built (`build:`) are not
// checked, since their image name is what the build produces.
//
// Usage:
//
//	composecheck [-p NAME] docker-compose.yml [override.yml ...]
//
// The working directory (where .env is read and relative paths resolve) is the
// directory of the first file, as for `docker compose -f FILE`. All profiles are
// enabled, so services behind a profile are checked too.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

func main() {
	name := flag.String("p", "", "project name (default: the first file's directory name)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [-p NAME] COMPOSE_FILE [COMPOSE_FILE ...]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(context.Background(), flag.Args(), *name); err != nil {
		fmt.Fprintf(os.Stderr, "composecheck: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, files []string, name string) error {
	workDir, err := filepath.Abs(filepath.Dir(files[0]))
	if err != nil {
		return err
	}
	if name == "" {
		name = loader.NormalizeProjectName(filepath.Base(workDir))
	}
	options, err := cli.NewProjectOptions(files,
		cli.WithName(name),
		cli.WithWorkingDirectory(workDir),
		cli.WithOsEnv,
		cli.WithEnvFiles(), // the default: .env in the working directory, if present
		cli.WithDotEnv,
		cli.WithProfiles([]string{"*"}),
	)
	if err != nil {
		return fmt.Errorf("options: %w", err)
	}
	project, err := options.LoadProject(ctx)
	if err != nil {
		return fmt.Errorf("loading %s: %w", strings.Join(files, ", "), err)
	}

	problems := unpinnedImages(project)
	if len(problems) > 0 {
		return fmt.Errorf("unpinned images (give each a version tag other than latest, or a digest):\n  %s",
			strings.Join(problems, "\n  "))
	}
	fmt.Printf("composecheck: %s OK (project %q, %d services, all images pinned)\n",
		strings.Join(files, ", "), project.Name, len(project.Services)+len(project.DisabledServices))
	return nil
}

// unpinnedImages lists "service: image (reason)" for every pulled image without a
// usable tag, sorted by service name.
func unpinnedImages(project *types.Project) []string {
	var problems []string
	for _, services := range []types.Services{project.Services, project.DisabledServices} {
		for name, service := range services {
			if service.Build != nil {
				continue
			}
			if reason := unpinnedReason(service.Image); reason != "" {
				problems = append(problems, fmt.Sprintf("%s: image %q (%s)", name, service.Image, reason))
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// unpinnedReason returns why an image reference is not pinned, or "" if it is.
// A digest (`name@sha256:...`) pins; otherwise the tag is what follows the last
// ':' after the last '/' (a ':' before it belongs to a registry port).
func unpinnedReason(image string) string {
	if image == "" {
		return "no image and no build"
	}
	if strings.Contains(image, "@") {
		return ""
	}
	lastPart := image[strings.LastIndex(image, "/")+1:]
	i := strings.LastIndex(lastPart, ":")
	if i < 0 {
		return "no tag"
	}
	switch tag := lastPart[i+1:]; tag {
	case "":
		return "empty tag"
	case "latest":
		return "tag latest"
	}
	return ""
}
