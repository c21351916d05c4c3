// Command etcd runs the etcd server from the pinned go.etcd.io/etcd/server
// module. Upstream keeps the etcd main package in a module of its own; this
// wrapper lets the binary be built from the server module alone.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
