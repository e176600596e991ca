package config

import (
	"strings"
	"testing"
)

const redisBase = `
sinks:
  - {name: app, url: "http://127.0.0.1:8080/hooks"}
sources:
  - {name: orders, schedule: "@every 10s", url: "http://127.0.0.1:9000/orders", key: id}
`

func TestStateBackendSelection(t *testing.T) {
	tests := []struct {
		name      string
		state     string
		env       map[string]string
		wantRedis string // "" = bbolt
		wantPath  string
		wantErr   string
	}{
		{name: "default is the embedded file", wantPath: DefaultStatePath},
		{name: "REDIS_URL selects Redis", env: map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/2"}, wantRedis: "redis://127.0.0.1:6379/2"},
		{name: "an explicit path beats REDIS_URL", state: "state: {path: ./x.db}\n", env: map[string]string{"REDIS_URL": "redis://127.0.0.1:6379"}, wantPath: "./x.db"},
		{name: "state.redis in the file", state: "state: {redis: {url: \"redis://127.0.0.1:7000\", prefix: \"pb:\"}}\n", wantRedis: "redis://127.0.0.1:7000"},
		{name: "a bad REDIS_URL is an error that hides it", env: map[string]string{"REDIS_URL": "http://user:hunter2@x"}, wantErr: "scheme must be redis or rediss"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			cfg, err := Parse("b.yaml", []byte(tt.state+redisBase), lookup)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("err = %v, want %q without the secret", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.wantRedis != "":
				if cfg.State.Redis == nil || cfg.State.Redis.URL != tt.wantRedis || cfg.State.Redis.Prefix == "" {
					t.Fatalf("state = %+v, want redis %s with a prefix", cfg.State, tt.wantRedis)
				}
			default:
				if cfg.State.Redis != nil || cfg.State.Path != tt.wantPath {
					t.Fatalf("state = %+v, want path %s", cfg.State, tt.wantPath)
				}
			}
		})
	}
}
