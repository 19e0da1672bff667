package policyfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/policy"
)

// Load reads and compiles the policy file at path. Errors name the path.
func Load(path string) (*policy.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err // *fs.PathError names the path
	}
	return Parse(path, data)
}

// Parse compiles the policy in data, a YAML document; file names it in
// messages.
func Parse(file string, data []byte) (*policy.Policy, error) {
	doc, err := decode(file, data)
	if err != nil {
		return nil, err
	}
	return policy.Compile(file, doc)
}

// decode decodes exactly one YAML document into a generic tree. Keys
// written twice in a mapping are errors (the decoder's default).
func decode(file string, data []byte) (any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc any
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // empty: policy.Compile says so
		}
		return nil, yamlError(file, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
		return doc, nil
	case err != nil:
		return nil, yamlError(file, err)
	}
	return nil, fmt.Errorf("%s: line %d: a second YAML document: a policy file holds exactly one", file, next.Line)
}

// yamlError rewrites the decoder's errors as "<file>: line N: <problem>",
// one error per problem.
func yamlError(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		errs := make([]error, len(te.Errors))
		for i, e := range te.Errors {
			errs[i] = fmt.Errorf("%s: %s", file, e)
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
}
