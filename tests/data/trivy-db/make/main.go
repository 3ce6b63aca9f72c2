// Writes a tiny trivy vulnerability DB (schema 2) for tests: one made-up
// advisory for one Debian 12 package. Usage: mkdb OUTDIR
package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

func put(tx *bolt.Tx, path []string, key string, value any) error {
	b, err := tx.CreateBucketIfNotExists([]byte(path[0]))
	if err != nil {
		return err
	}
	for _, name := range path[1:] {
		if b, err = b.CreateBucketIfNotExists([]byte(name)); err != nil {
			return err
		}
	}
	data, err := json.Marshal(value)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

func main() {
	dir := filepath.Join(os.Args[1], "db")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		panic(err)
	}
	db, err := bolt.Open(filepath.Join(dir, "trivy.db"), 0o644, nil)
	if err != nil {
		panic(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := put(tx, []string{"data-source"}, "debian 12", map[string]string{
			"ID": "debian", "Name": "Debian Security Tracker", "URL": "https://salsa.debian.org/security-tracker-team/security-tracker",
		}); err != nil {
			return err
		}
		if err := put(tx, []string{"debian 12", "berth-planted"}, "CVE-0000-0001", map[string]string{
			"FixedVersion": "1.0.1-1",
		}); err != nil {
			return err
		}
		return put(tx, []string{"vulnerability"}, "CVE-0000-0001", map[string]any{
			"Title":          "berth test fixture: planted vulnerability",
			"Severity":       "HIGH",
			"VendorSeverity": map[string]int{"debian": 3},
		})
	})
	if err != nil {
		panic(err)
	}
	db.Close()
	now := time.Now().UTC()
	meta, _ := json.Marshal(map[string]any{
		"Version": 2, "NextUpdate": now.AddDate(10, 0, 0), "UpdatedAt": now, "DownloadedAt": now,
	})
	if err := os.WriteFile(filepath.Join(dir, "metadata.json"), meta, 0o644); err != nil {
		panic(err)
	}
}
