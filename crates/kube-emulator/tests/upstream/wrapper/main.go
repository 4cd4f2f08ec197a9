// Command apiextensions-wrapper runs the upstream Kubernetes code that serves CRDs and custom
// resources (k8s.io/apiextensions-apiserver, as Debian packages it) as a stand-alone server for
// the fidelity tests of kube-emulator and apikey-operator (crates/kube-emulator/tests/upstream/).
//
// The stock apiextensions-apiserver main expects a kube-apiserver next to it: it delegates
// authentication and authorization, reads core informers from it, and leaves /apis to the
// aggregator. This wrapper makes it self-contained on loopback:
//
//   - it generates a CA, a serving certificate and an admin client certificate
//     (CN=admin, O=system:masters) and writes a kubeconfig that uses them;
//   - authentication is by those client certificates, authorization allows system:masters;
//   - with --authentication-token-webhook-config-file, bearer tokens are authenticated as
//     kube-apiserver does it (webhook.go beside this file), and SelfSubjectReview is served so
//     that a test (or `kubectl auth whoami`) sees whom the server authenticated;
//   - core informers (Services, used only for conversion webhooks) come from an in-memory fake;
//   - no admission plugins (they need Namespaces, which this server does not serve);
//   - /apis discovery (legacy and aggregated) and /openapi/v2 are installed, with CRD groups
//     kept in the legacy list by a CRD informer.
//
// Built in GOPATH mode by setup.sh beside it.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"time"

	noopoteltrace "go.opentelemetry.io/otel/trace/noop"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1beta1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/version"
	x509request "k8s.io/apiserver/pkg/authentication/request/x509"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	discoveryaggregated "k8s.io/apiserver/pkg/endpoints/discovery/aggregated"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/apiserver/pkg/util/proxy"
	"k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

const etcdPrefix = "/registry/apiextensions.kubernetes.io"

func main() {
	etcdServers := flag.String("etcd-servers", "http://127.0.0.1:2379", "etcd client URL")
	port := flag.Int("secure-port", 6443, "HTTPS port on 127.0.0.1")
	certDir := flag.String("cert-dir", "", "where certificates and the kubeconfig are written (required)")
	verbosity := flag.String("v", "0", "klog verbosity")
	var tokenWebhook webhookFlags
	tokenWebhook.register(flag.CommandLine)
	flag.Parse()
	if *certDir == "" {
		fmt.Fprintln(os.Stderr, "--cert-dir is required")
		os.Exit(2)
	}
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("v", *verbosity)

	if err := run(*etcdServers, *port, *certDir, tokenWebhook); err != nil {
		fmt.Fprintf(os.Stderr, "apiextensions-wrapper: %v\n", err)
		os.Exit(1)
	}
}

func run(etcdServers string, port int, certDir string, tokenWebhook webhookFlags) error {
	pki, err := writePKI(certDir, port)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}

	runOptions := genericoptions.NewServerRunOptions()
	if err := runOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	if err := runOptions.Complete(); err != nil {
		return err
	}
	runOptions.AdvertiseAddress = net.ParseIP("127.0.0.1")
	recommended := genericoptions.NewRecommendedOptions(etcdPrefix,
		apiserver.Codecs.LegacyCodec(v1beta1.SchemeGroupVersion, apiextensionsv1.SchemeGroupVersion))
	recommended.Etcd.StorageConfig.Transport.ServerList = []string{etcdServers}
	recommended.SecureServing.BindAddress = net.ParseIP("127.0.0.1")
	recommended.SecureServing.BindPort = port
	recommended.SecureServing.ServerCert.CertKey.CertFile = pki.servingCert
	recommended.SecureServing.ServerCert.CertKey.KeyFile = pki.servingKey

	cfg := genericapiserver.NewRecommendedConfig(apiserver.Codecs)
	if err := runOptions.ApplyTo(&cfg.Config); err != nil {
		return err
	}
	if err := recommended.Etcd.ApplyTo(&cfg.Config); err != nil {
		return err
	}
	if err := recommended.SecureServing.ApplyToConfig(&cfg.Config); err != nil {
		return err
	}

	clientCA, err := dynamiccertificates.NewStaticCAContent("client-ca", pki.caPEM)
	if err != nil {
		return err
	}
	if err := cfg.Authentication.ApplyClientCert(clientCA, cfg.SecureServing); err != nil {
		return err
	}
	cfg.Authentication.Authenticator = x509request.NewDynamic(clientCA.VerifyOptions, x509request.CommonNameUserConversion)
	cfg.Authorization.Authorizer = authorizerfactory.NewPrivilegedGroups(user.SystemPrivilegedGroup)
	if tokenWebhook.enabled() {
		if err := tokenWebhook.applyTo(&cfg.Config, clientCA); err != nil {
			return fmt.Errorf("webhook token authenticator: %w", err)
		}
	}

	// Nothing reads core objects except the conversion-webhook Service resolver.
	cfg.SharedInformerFactory = informers.NewSharedInformerFactory(fake.NewSimpleClientset(), 0)

	enablement := genericoptions.NewAPIEnablementOptions()
	if err := enablement.ApplyTo(&cfg.Config, apiserver.DefaultAPIResourceConfigSource(), apiserver.Scheme); err != nil {
		return err
	}
	definitions := openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions)
	cfg.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(definitions, openapinamer.NewDefinitionNamer(apiserver.Scheme, scheme.Scheme))
	cfg.OpenAPIConfig.Info.Title = "Kubernetes"
	cfg.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(definitions, openapinamer.NewDefinitionNamer(apiserver.Scheme, scheme.Scheme))
	cfg.OpenAPIV3Config.Info.Title = "Kubernetes"

	config := &apiserver.Config{
		GenericConfig: cfg,
		ExtraConfig: apiserver.ExtraConfig{
			CRDRESTOptionsGetter: options.NewCRDRESTOptionsGetter(*recommended.Etcd, cfg.ResourceTransformers, cfg.StorageObjectCountTracker),
			ServiceResolver:      serviceResolver{cfg.SharedInformerFactory.Core().V1().Services().Lister()},
			AuthResolverWrapper:  webhook.NewDefaultAuthenticationInfoResolverWrapper(nil, nil, cfg.LoopbackClientConfig, noopoteltrace.NewTracerProvider()),
		},
	}
	server, err := config.Complete().New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		return err
	}
	installRootDiscovery(server)
	if tokenWebhook.enabled() {
		installSelfSubjectReview(server.GenericAPIServer)
	}
	return server.GenericAPIServer.PrepareRun().RunWithContext(genericapiserver.SetupSignalContext())
}

// installRootDiscovery serves /apis, which kube-aggregator serves in a real control plane. The
// aggregated form is fed by apiextensions' own discovery controller; the legacy APIGroupList is
// kept in step with the CRDs here.
func installRootDiscovery(s *apiserver.CustomResourceDefinitions) {
	g := s.GenericAPIServer
	wrapped := discoveryaggregated.WrapAggregatedDiscoveryToHandler(g.DiscoveryGroupManager, g.AggregatedDiscoveryGroupManager, g.PeerAggregatedDiscoveryManager)
	g.Handler.GoRestfulContainer.Add(wrapped.GenerateWebService("/apis", metav1.APIGroupList{}))

	crds := s.Informers.Apiextensions().V1().CustomResourceDefinitions()
	known := sets.New[string]()
	sync := func() {
		list, err := crds.Lister().List(labels.Everything())
		if err != nil {
			return
		}
		versionsByGroup := map[string]sets.Set[string]{}
		for _, crd := range list {
			if !established(crd) {
				continue
			}
			for _, v := range crd.Spec.Versions {
				if !v.Served {
					continue
				}
				if versionsByGroup[crd.Spec.Group] == nil {
					versionsByGroup[crd.Spec.Group] = sets.New[string]()
				}
				versionsByGroup[crd.Spec.Group].Insert(v.Name)
			}
		}
		for group := range known {
			if _, ok := versionsByGroup[group]; !ok {
				g.DiscoveryGroupManager.RemoveGroup(group)
				known.Delete(group)
			}
		}
		for group, versions := range versionsByGroup {
			names := sets.List(versions)
			sort.Slice(names, func(i, j int) bool {
				return version.CompareKubeAwareVersionStrings(names[i], names[j]) > 0
			})
			apiGroup := metav1.APIGroup{Name: group}
			for _, v := range names {
				apiGroup.Versions = append(apiGroup.Versions, metav1.GroupVersionForDiscovery{GroupVersion: group + "/" + v, Version: v})
			}
			apiGroup.PreferredVersion = apiGroup.Versions[0]
			g.DiscoveryGroupManager.AddGroup(apiGroup)
			known.Insert(group)
		}
	}
	_, _ = crds.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(interface{}) { sync() },
		UpdateFunc: func(interface{}, interface{}) { sync() },
		DeleteFunc: func(interface{}) { sync() },
	})
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

type serviceResolver struct {
	services corelisters.ServiceLister
}

func (r serviceResolver) ResolveEndpoint(namespace, name string, port int32) (*url.URL, error) {
	return proxy.ResolveCluster(r.services, namespace, name, port)
}

type pkiFiles struct {
	caPEM       []byte
	servingCert string
	servingKey  string
}

// writePKI creates ca.crt, serving.{crt,key}, admin.{crt,key} and kubeconfig in dir.
func writePKI(dir string, port int) (pkiFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return pkiFiles{}, err
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return pkiFiles{}, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "apikey-operator fidelity CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return pkiFiles{}, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return pkiFiles{}, err
	}
	issue := func(serial int64, subject pkix.Name, usage x509.ExtKeyUsage, ips []net.IP, dns []string) ([]byte, []byte, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		template := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      subject,
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
			DNSNames:     dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
	}
	servingCert, servingKey, err := issue(2, pkix.Name{CommonName: "127.0.0.1"}, x509.ExtKeyUsageServerAuth,
		[]net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"})
	if err != nil {
		return pkiFiles{}, err
	}
	adminCert, adminKey, err := issue(3, pkix.Name{CommonName: "admin", Organization: []string{user.SystemPrivilegedGroup}},
		x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		return pkiFiles{}, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	b64 := base64.StdEncoding.EncodeToString
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: upstream
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: upstream
  context:
    cluster: upstream
    user: admin
    namespace: default
current-context: upstream
`, port, b64(caPEM), b64(adminCert), b64(adminKey))

	files := map[string][]byte{
		"ca.crt":      caPEM,
		"serving.crt": servingCert,
		"serving.key": servingKey,
		"admin.crt":   adminCert,
		"admin.key":   adminKey,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			return pkiFiles{}, err
		}
	}
	// Written last and atomically: its presence tells the harness the certificates are ready.
	tmp := filepath.Join(dir, "kubeconfig.tmp")
	if err := os.WriteFile(tmp, []byte(kubeconfig), 0o600); err != nil {
		return pkiFiles{}, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "kubeconfig")); err != nil {
		return pkiFiles{}, err
	}
	return pkiFiles{
		caPEM:       caPEM,
		servingCert: filepath.Join(dir, "serving.crt"),
		servingKey:  filepath.Join(dir, "serving.key"),
	}, nil
}
