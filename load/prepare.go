package load

import (
	"crypto/sha256"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// KeyImporter is a store that takes many run-time keys at once (store/file,
// store/redis).
type KeyImporter interface {
	ImportKeys(keys []*policy.APIKey) error
}

// prepareBatch is the number of keys per ImportKeys call.
const prepareBatch = 10000

// Prepare saves the load keys KeyValue(0) to KeyValue(n-1) in st, key i
// with id and customer KeyID(i) on plan, created at now; progress, when
// not nil, is called after each batch with the keys saved so far.
func Prepare(st KeyImporter, n int, plan string, now time.Time, progress func(done int)) error {
	batch := make([]*policy.APIKey, 0, min(n, prepareBatch))
	for i := range n {
		id := KeyID(i)
		batch = append(batch, &policy.APIKey{ID: id, Customer: id, Hash: sha256.Sum256([]byte(KeyValue(i))),
			Plans: []string{plan}, Enabled: true, Created: now})
		if len(batch) == cap(batch) || i == n-1 {
			if err := st.ImportKeys(batch); err != nil {
				return err
			}
			batch = make([]*policy.APIKey, 0, cap(batch))
			if progress != nil {
				progress(i + 1)
			}
		}
	}
	return nil
}
