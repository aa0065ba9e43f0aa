package plugintest

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// CheckConfigTable checks that the "## Config" table of README.md in the
// working directory lists exactly the koanf keys of cfg (a Config struct
// value or pointer); nested structs are dotted ("flow.source_ip"), time.Duration and
// other non-struct fields are leaves.
func CheckConfigTable(t *testing.T, cfg any) {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatalf("read README.md: %v", err)
	}
	section := string(readme)
	if i := strings.Index(section, "\n## Config"); i >= 0 {
		section = section[i+1:]
		if j := strings.Index(section[3:], "\n## "); j >= 0 {
			section = section[:j+3]
		}
	} else {
		t.Fatal("README.md has no ## Config section")
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_.]+)` \\|").FindAllStringSubmatch(section, -1) {
		documented[m[1]] = true
	}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag := f.Tag.Get("koanf")
			if tag == "" || tag == "-" {
				continue
			}
			key := prefix + tag
			if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() != "time" {
				walk(key+".", f.Type)
				continue
			}
			if !documented[key] {
				t.Errorf("README.md's config table lacks `%s`", key)
			}
			delete(documented, key)
		}
	}
	typ := reflect.TypeOf(cfg)
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	walk("", typ)
	for k := range documented {
		t.Errorf("README.md's config table documents `%s`, which is not a key", k)
	}
}
