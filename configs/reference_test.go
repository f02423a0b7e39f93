package configs

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/config-reference.md")

// TestConfigReference keeps docs/config-reference.md in step with the schema:
// every key of Config, with its doc comment, must be in it. Run with -update
// after changing the schema.
func TestConfigReference(t *testing.T) {
	want := configReference(t)
	path := filepath.Join("..", "docs", "config-reference.md")
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run: go test ./configs -run TestConfigReference -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run go test ./configs -run TestConfigReference -update", path)
	}
}

// configReference renders every YAML key of Config with the doc comment of
// its field, walking the types by reflection and reading comments from source.
func configReference(t *testing.T) []byte {
	docs := fieldDocs(t)
	var b bytes.Buffer
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("Generated from the schema in `configs/` by `go test ./configs -run TestConfigReference -update`;\n")
	b.WriteString("the test fails when this file and the code disagree. Unknown keys are errors (with file:line);\n")
	b.WriteString("defaults are set in one place, `Config.setDefaults` and the sections' `setDefaults`.\n")
	b.WriteString("Durations are Go durations (`30s`, `5m`). `NAME` stands for a map key you choose.\n\n")
	b.WriteString("| key | type | meaning |\n|---|---|---|\n")
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" || !f.IsExported() {
				continue
			}
			key := prefix + tag
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			doc := docs[typ.Name()+"."+f.Name]
			switch {
			case ft.Kind() == reflect.Struct && ft.Name() != "Duration":
				fmt.Fprintf(&b, "| `%s` | section | %s |\n", key, doc)
				walk(key+".", ft)
			case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
				fmt.Fprintf(&b, "| `%s.NAME` | map of sections | %s |\n", key, doc)
				walk(key+".NAME.", ft.Elem())
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				fmt.Fprintf(&b, "| `%s[]` | list of sections | %s |\n", key, doc)
				walk(key+"[].", ft.Elem())
			default:
				fmt.Fprintf(&b, "| `%s` | %s | %s |\n", key, typeName(ft), doc)
			}
		}
	}
	walk("", reflect.TypeOf(Config{}))
	return b.Bytes()
}

func typeName(t reflect.Type) string {
	switch {
	case t.String() == "time.Duration":
		return "duration"
	case t.Kind() == reflect.Slice:
		return "list of " + typeName(t.Elem())
	case t.Kind() == reflect.Map:
		return "map of " + typeName(t.Elem())
	case t.Kind() == reflect.Uint32 || t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		return "integer"
	case t.Kind() == reflect.Float64:
		return "number"
	}
	return t.Kind().String()
}

// fieldDocs maps "Type.Field" to the field's doc comment, joined on one line.
func fieldDocs(t *testing.T) map[string]string {
	fset := token.NewFileSet()
	files, _ := filepath.Glob("*.go")
	docs := map[string]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			for _, fld := range st.Fields.List {
				text := ""
				if fld.Doc != nil {
					text = fld.Doc.Text()
				} else if fld.Comment != nil {
					text = fld.Comment.Text()
				}
				text = strings.Join(strings.Fields(text), " ")
				text = strings.ReplaceAll(text, "|", "\\|")
				for _, id := range fld.Names {
					docs[ts.Name.Name+"."+id.Name] = text
				}
			}
			return true
		})
	}
	return docs
}
