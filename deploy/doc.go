// Package deploy holds Rampart's deployment manifests (kubernetes/, applied with
// kubectl apply -k) and the Dockerfile of its image. Its tests check the manifests against a real
// kube-apiserver, Rampart's own admission checks and the server's configuration loader.
package deploy
