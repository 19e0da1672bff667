// Package policyfile reads tollgate's YAML policy file (its format: package policy's doc) and
// compiles it with policy.Compile.
//
// Parse decodes the YAML into the generic tree policy.Compile takes and
// returns the compiled policy or every error of the file at once, each
// naming the file, the field path and the bad value:
//
//	p, err := policyfile.Load("policy.yaml")
//	if err != nil {
//		// policy.yaml: usage_plans.pro.quota.period: "fortnight" is not one of day, week, month
//		// policy.yaml: api_keys[2].plans[0]: "gold" is not a usage plan (plans: enterprise, free, pro)
//		return err
//	}
//
// A file must hold exactly one YAML document; a key written twice in one
// mapping is an error. YAML syntax errors are reported as
// "<file>: line N: <problem>".
//
// The functions keep no state and are safe for concurrent use; the
// *policy.Policy they return is immutable.
package policyfile
