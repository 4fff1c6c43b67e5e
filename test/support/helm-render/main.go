// Command helm-render renders a Helm chart the way `helm template` does, for
// machines where no helm binary can be installed. It covers the part of Helm
// that Sluice's chart uses: values.yaml merged with -f files and --set pairs,
// the template data (.Values, .Release, .Chart, .Capabilities, .Template),
// sprig's functions, and Helm's own include, tpl, required, toYaml, fromYaml,
// toJson and lookup. Partials (files starting with "_") are only defined, not
// printed; NOTES.txt is printed only with -notes.
//
// Build (offline, GOPATH mode, Debian golang-go + golang-github-masterminds-sprig-dev
// + golang-gopkg-yaml.v2-dev):
//
//	GO111MODULE=off GOPATH=<dir>:/usr/share/gocode go build -o helm-render .
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	yaml "gopkg.in/yaml.v2"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// apiVersions mirrors Helm's chartutil.VersionSet so templates can ask
// `.Capabilities.APIVersions.Has "monitoring.coreos.com/v1"`.
type apiVersions []string

func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

type kubeVersion struct {
	Version string
	Major   string
	Minor   string
}

func (k kubeVersion) String() string { return k.Version }

// GitVersion is kept for charts written against Helm 2.
func (k kubeVersion) GitVersion() string { return k.Version }

type capabilities struct {
	KubeVersion kubeVersion
	APIVersions apiVersions
	HelmVersion map[string]interface{}
}

// The API groups a stock cluster serves; -api-versions adds CRD-backed ones.
var defaultAPIVersions = []string{
	"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v1", "autoscaling/v2",
	"networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "storage.k8s.io/v1",
	"apiextensions.k8s.io/v1", "coordination.k8s.io/v1",
}

func main() {
	var valueFiles, setPairs, extraAPIs multiFlag
	chartDir := flag.String("chart", "", "chart directory (holds Chart.yaml)")
	releaseName := flag.String("name", "release-name", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	kube := flag.String("kube-version", "v1.29.0", "Kubernetes version reported in .Capabilities")
	strict := flag.Bool("strict", false, "fail on a reference to a value that does not exist (like helm lint --strict)")
	notes := flag.Bool("notes", false, "print the rendered NOTES.txt instead of the manifests")
	upgrade := flag.Bool("upgrade", false, "render as an upgrade (.Release.IsUpgrade) instead of an install")
	flag.Var(&valueFiles, "f", "values file merged over values.yaml (repeatable, later wins)")
	flag.Var(&setPairs, "set", "key.path=value merged last (repeatable)")
	flag.Var(&extraAPIs, "api-versions", "extra API version reported in .Capabilities.APIVersions (repeatable)")
	flag.Parse()
	if *chartDir == "" {
		fail(errors.New("-chart is required"))
	}
	out, err := render(*chartDir, *releaseName, *namespace, *kube, *strict, *notes, *upgrade, valueFiles, setPairs, extraAPIs)
	if err != nil {
		fail(err)
	}
	os.Stdout.WriteString(out)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "Error: %s\n", err)
	os.Exit(1)
}

func render(chartDir, releaseName, namespace, kube string, strict, notes, upgrade bool,
	valueFiles, setPairs, extraAPIs []string) (string, error) {
	chartMeta, err := readYAMLFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	chartName, _ := chartMeta["name"].(string)
	if chartName == "" {
		return "", errors.New("Chart.yaml has no name")
	}
	values, err := readYAMLFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if values == nil {
		values = map[string]interface{}{}
	}
	for _, f := range valueFiles {
		override, err := readYAMLFile(f)
		if err != nil {
			return "", err
		}
		values = mergeValues(values, override)
	}
	for _, pair := range setPairs {
		if err := setValue(values, pair); err != nil {
			return "", err
		}
	}

	major, minor := splitKubeVersion(kube)
	caps := capabilities{
		KubeVersion: kubeVersion{Version: kube, Major: major, Minor: minor},
		APIVersions: append(apiVersions(defaultAPIVersions), extraAPIs...),
		HelmVersion: map[string]interface{}{"Version": "v3.14.0"},
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name":      releaseName,
			"Namespace": namespace,
			"Service":   "Helm",
			"IsInstall": !upgrade,
			"IsUpgrade": upgrade,
			"Revision":  1,
		},
		"Chart":        chartObject(chartMeta),
		"Capabilities": caps,
	}

	templatesDir := filepath.Join(chartDir, "templates")
	var files []string
	err = filepath.WalkDir(templatesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)

	root := template.New("gotpl")
	if strict {
		root.Option("missingkey=error")
	} else {
		root.Option("missingkey=zero")
	}
	root.Funcs(funcMap(root))
	names := make([]string, 0, len(files))
	for _, f := range files {
		rel, _ := filepath.Rel(templatesDir, f)
		name := chartName + "/templates/" + filepath.ToSlash(rel)
		src, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		if _, err := root.New(name).Parse(string(src)); err != nil {
			return "", fmt.Errorf("parse error in %s: %w", name, err)
		}
		names = append(names, name)
	}

	var out strings.Builder
	for _, name := range names {
		base := filepath.Base(name)
		isNotes := base == "NOTES.txt"
		if strings.HasPrefix(base, "_") || isNotes != notes {
			continue
		}
		if !isNotes && !strings.HasSuffix(base, ".yaml") && !strings.HasSuffix(base, ".yml") && !strings.HasSuffix(base, ".tpl") {
			continue
		}
		data := shallowCopy(top)
		data["Template"] = map[string]interface{}{"Name": name, "BasePath": chartName + "/templates"}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return "", fmt.Errorf("render error in %s: %w", name, cleanExecError(err))
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if notes {
			out.WriteString(text)
			continue
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		// helm template splits a file on document separators and labels each part with its source.
		for _, doc := range splitDocuments(text) {
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, strings.TrimRight(doc, "\n"))
		}
	}
	return out.String(), nil
}

// cleanExecError surfaces the message given to `required` / `fail` plainly, as Helm does.
func cleanExecError(err error) error {
	var execErr template.ExecError
	if errors.As(err, &execErr) {
		msg := execErr.Err.Error()
		if i := strings.LastIndex(msg, "error calling "); i >= 0 {
			if j := strings.Index(msg[i:], ": "); j >= 0 {
				return fmt.Errorf("%s (at %s)", msg[i+j+2:], strings.TrimSpace(msg[:i]))
			}
		}
	}
	return err
}

func splitDocuments(text string) []string {
	var docs []string
	var cur strings.Builder
	flush := func() {
		if strings.TrimSpace(stripComments(cur.String())) != "" {
			docs = append(docs, strings.Trim(cur.String(), "\n"))
		}
		cur.Reset()
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimRight(line, " ") == "---" {
			flush()
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
	}
	flush()
	return docs
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

func funcMap(root *template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	includeDepth := map[string]int{}
	f["include"] = func(name string, data interface{}) (string, error) {
		if includeDepth[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		includeDepth[name]++
		defer func() { includeDepth[name]-- }()
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %w", text, err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %w", text, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, errors.New(msg)
		}
		return v, nil
	}
	f["toYaml"] = func(v interface{}) string {
		s, err := toYAML(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(s, "\n")
	}
	f["mustToYaml"] = func(v interface{}) (string, error) {
		s, err := toYAML(v)
		return strings.TrimSuffix(s, "\n"), err
	}
	f["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yamlUnmarshalJSONish([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["toJson"] = func(v interface{}) string {
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(b)
	}
	// No cluster to ask: `lookup` finds nothing, exactly as under `helm template`.
	f["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	return f
}

// toYAML matches Helm (sigs.k8s.io/yaml): marshal to JSON, then JSON to YAML,
// so keys are sorted and json tags apply.
func toYAML(v interface{}) (string, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	var obj interface{}
	if err := yaml.Unmarshal(j, &obj); err != nil {
		return "", err
	}
	out, err := yaml.Marshal(obj)
	return string(out), err
}

func readYAMLFile(path string) (map[string]interface{}, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yamlUnmarshalJSONish(raw, &m); err != nil {
		return nil, fmt.Errorf("cannot parse %s: %w", path, err)
	}
	return m, nil
}

// yamlUnmarshalJSONish decodes YAML into the JSON data model (string keys,
// float64 numbers), the shapes Helm's values have after sigs.k8s.io/yaml.
func yamlUnmarshalJSONish(raw []byte, out *map[string]interface{}) error {
	var v interface{}
	if err := yaml.Unmarshal(raw, &v); err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	conv, err := toJSONModel(v)
	if err != nil {
		return err
	}
	m, ok := conv.(map[string]interface{})
	if !ok {
		return errors.New("top level is not a mapping")
	}
	*out = m
	return nil
}

func toJSONModel(v interface{}) (interface{}, error) {
	switch x := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(x))
		for k, val := range x {
			c, err := toJSONModel(val)
			if err != nil {
				return nil, err
			}
			m[fmt.Sprint(k)] = c
		}
		return m, nil
	case []interface{}:
		s := make([]interface{}, len(x))
		for i, val := range x {
			c, err := toJSONModel(val)
			if err != nil {
				return nil, err
			}
			s[i] = c
		}
		return s, nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	default:
		return v, nil
	}
}

// mergeValues applies Helm's rules: maps merge recursively, anything else
// replaces, and an explicit null deletes the key.
func mergeValues(base, override map[string]interface{}) map[string]interface{} {
	out := shallowCopy(base)
	for k, v := range override {
		if v == nil {
			delete(out, k)
			continue
		}
		if om, ok := v.(map[string]interface{}); ok {
			if bm, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeValues(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// setValue handles the --set forms the tests use: a.b.c=value, with value
// typed like Helm does (ints, bools, null, else string).
func setValue(values map[string]interface{}, pair string) error {
	eq := strings.Index(pair, "=")
	if eq <= 0 {
		return fmt.Errorf("--set %q: expected key.path=value", pair)
	}
	path := strings.Split(pair[:eq], ".")
	raw := pair[eq+1:]
	var val interface{} = raw
	switch {
	case raw == "true":
		val = true
	case raw == "false":
		val = false
	case raw == "null":
		val = nil
	default:
		if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
			val = float64(n)
		}
	}
	m := values
	for _, key := range path[:len(path)-1] {
		next, ok := m[key].(map[string]interface{})
		if !ok {
			next = map[string]interface{}{}
			m[key] = next
		}
		m = next
	}
	last := path[len(path)-1]
	if val == nil {
		delete(m, last)
	} else {
		m[last] = val
	}
	return nil
}

func chartObject(meta map[string]interface{}) map[string]interface{} {
	c := map[string]interface{}{}
	for k, v := range meta {
		if k == "" {
			continue
		}
		c[strings.ToUpper(k[:1])+k[1:]] = v
	}
	// Helm exposes these even when Chart.yaml leaves them out.
	for _, k := range []string{"Name", "Version", "AppVersion", "Description", "Type"} {
		if _, ok := c[k]; !ok {
			c[k] = ""
		}
	}
	return c
}

func splitKubeVersion(v string) (string, string) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return parts[0], "0"
	}
	return parts[0], parts[1]
}

func shallowCopy(m map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
