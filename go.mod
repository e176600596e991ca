module github.com/pollbridge/pollbridge

go 1.26

require (
	github.com/robfig/cron/v3 v3.0.1
	github.com/tidwall/gjson v1.20.2
	go.etcd.io/bbolt v1.5.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/tidwall/match v1.1.1 // indirect
	github.com/tidwall/pretty v1.3.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
)
