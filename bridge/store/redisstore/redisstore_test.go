package redisstore

import (
	"testing"

	"github.com/pollbridge/pollbridge/bridge/store"
	"github.com/pollbridge/pollbridge/bridge/store/storetest"
)

func TestConformance(t *testing.T) {
	url := localURL(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openStore(t, url, Options{}) })
}

func TestConformanceCluster(t *testing.T) {
	url := clusterURL(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openStore(t, url, Options{}) })
}
