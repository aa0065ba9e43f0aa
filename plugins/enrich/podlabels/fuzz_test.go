package podlabels

import (
	"os"
	"testing"
)

// FuzzParseObjects feeds arbitrary files to the file backend's decoder: it
// returns objects or an error, never panics, and what it returns indexes.
func FuzzParseObjects(f *testing.F) {
	for _, path := range []string{"testdata/cluster.yaml", "testdata/cluster.json"} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: Service\nspec: {clusterIP: None}\n"))
	f.Add([]byte(`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Node","status":{"addresses":[{"type":"InternalIP","address":"::1"}]}}]}`))
	enc := newLabelEncoder(DefaultConfig().Labels)
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := parseObjects(data)
		if err != nil {
			return
		}
		c := objs.index(enc)
		s := newStore(0)
		s.replace(c.pods, c.nodes, c.services)
		s.rebuild()
	})
}
