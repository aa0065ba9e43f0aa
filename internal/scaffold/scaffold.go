// Package scaffold creates a new plugin folder that builds as-is, for
// `weir plugins new --kind K --name N [--dir D]`. Each kind is a template
// folder embedded from templates/<kind>/; files ending in .tmpl are
// rendered with text/template and lose the suffix.
package scaffold

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"
)

//go:embed all:templates
var templates embed.FS

// ModulePath is Weir's Go module path.
const ModulePath = "github.com/weir-flow/weir"

// Errors, matched with errors.Is.
var (
	ErrUnknownKind = errors.New("unknown plugin kind")
	ErrBadName     = errors.New("invalid plugin name")
	ErrExists      = errors.New("directory exists and is not empty")
)

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Kinds returns the kinds there are templates for, sorted.
func Kinds() []string {
	entries, _ := fs.ReadDir(templates, "templates")
	var kinds []string
	for _, e := range entries {
		if e.IsDir() {
			kinds = append(kinds, e.Name())
		}
	}
	sort.Strings(kinds)
	return kinds
}

// Data is what templates see.
type Data struct {
	// Name is the plugin's name: lowercase letters, digits and
	// underscores, starting with a letter.
	Name string
	// Module is the Go module of the new folder when it gets its own
	// go.mod, else "".
	Module string
	// WeirRoot is the Weir checkout a standalone folder's go.mod replaces
	// the Weir module with, else "".
	WeirRoot string
	// GoVersion is the go directive of a standalone go.mod: the Weir
	// checkout's, which it must not be below.
	GoVersion string
	// InRepo is true when the folder is inside the Weir module and builds
	// as one of its packages.
	InRepo bool
}

// New renders the template of kind into dir (created; it must not exist
// or be empty). Inside a Weir checkout the folder is a package of the
// Weir module; elsewhere it gets a go.mod that replaces the Weir module
// with the checkout found above the working directory, and Weir's go.sum.
func New(kind, name, dir string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w %q: use lowercase letters, digits and underscores, starting with a letter", ErrBadName, name)
	}
	root := path.Join("templates", kind)
	if _, err := fs.Stat(templates, root); err != nil || kind == "" {
		return fmt.Errorf("%w %q: want one of %s", ErrUnknownKind, kind, strings.Join(Kinds(), ", "))
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("plugin directory %s: %w", dir, err)
	}
	if entries, err := os.ReadDir(abs); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s: %w", dir, ErrExists)
	}
	data := Data{Name: name, GoVersion: "1.26"}
	if r := weirRoot(abs); r != "" {
		data.InRepo = true
	} else {
		data.Module = "example.com/" + name
		if wd, err := os.Getwd(); err == nil {
			data.WeirRoot = weirRoot(wd)
		}
		if v := goDirective(data.WeirRoot); v != "" {
			data.GoVersion = v
		}
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	err = fs.WalkDir(templates, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel := strings.TrimPrefix(p, root+"/")
		if rel == "go.mod.tmpl" && data.InRepo {
			return nil
		}
		content, err := templates.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(rel, ".tmpl") {
			rel = strings.TrimSuffix(rel, ".tmpl")
			t, err := template.New(rel).Option("missingkey=error").Parse(string(content))
			if err != nil {
				return fmt.Errorf("template %s: %w", p, err)
			}
			var buf bytes.Buffer
			if err := t.Execute(&buf, data); err != nil {
				return fmt.Errorf("template %s: %w", p, err)
			}
			content = buf.Bytes()
		}
		out := filepath.Join(abs, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(out, content, 0o644)
	})
	if err != nil {
		return fmt.Errorf("scaffold %s plugin %s: %w", kind, name, err)
	}
	if !data.InRepo && data.WeirRoot != "" {
		// The replaced module's dependencies need their checksums.
		if sum, err := os.ReadFile(filepath.Join(data.WeirRoot, "go.sum")); err == nil {
			if err := os.WriteFile(filepath.Join(abs, "go.sum"), sum, 0o644); err != nil {
				return fmt.Errorf("write go.sum: %w", err)
			}
		}
	}
	return nil
}

// weirRoot returns the directory above (or at) dir whose go.mod declares
// Weir's module, or "".
func weirRoot(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil {
			if first, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n"); strings.TrimSpace(first) == "module "+ModulePath {
				return d
			}
			return "" // inside another module
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// goDirective returns the go version of root's go.mod, or "".
func goDirective(root string) string {
	if root == "" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
