// The webhook token authenticator, opt-in: kube-apiserver's flags of the same names, built as
// kube-apiserver builds them (kubernetes/kubernetes pkg/kubeapiserver/authenticator/config.go,
// newWebhookTokenAuthenticator and the token union in New): the webhook client from the
// kubeconfig file (k8s.io/apiserver/pkg/util/webhook LoadKubeconfig), wrapped in a cache of the
// webhook's TTL for answers (errors not cached), in a token union, in the union's own cache of
// successes (kube-apiserver's TokenSuccessCacheTTL, 10 s, failures 0 s), beside the client
// certificates, with system:authenticated added. The server's API audiences are the
// authenticator's implicit audiences and are set on each request's context.
//
// SelfSubjectReview (POST /apis/authentication.k8s.io/v1/selfsubjectreviews) answers with the
// request's user, as kube-apiserver's does; any authenticated user may create one.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/group"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	requestunion "k8s.io/apiserver/pkg/authentication/request/union"
	"k8s.io/apiserver/pkg/authentication/request/websocket"
	x509request "k8s.io/apiserver/pkg/authentication/request/x509"
	tokencache "k8s.io/apiserver/pkg/authentication/token/cache"
	tokenunion "k8s.io/apiserver/pkg/authentication/token/union"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	authorizationunion "k8s.io/apiserver/pkg/authorization/union"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
	webhooktoken "k8s.io/apiserver/plugin/pkg/authenticator/token/webhook"
)

const selfSubjectReviewPath = "/apis/authentication.k8s.io/v1/selfsubjectreviews"

type webhookFlags struct {
	configFile   string
	version      string
	cacheTTL     time.Duration
	apiAudiences string
	successTTL   time.Duration
}

func (f *webhookFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.configFile, "authentication-token-webhook-config-file", "",
		"kubeconfig of the webhook token authenticator, as kube-apiserver's flag (off when empty)")
	// kube-apiserver's defaults.
	fs.StringVar(&f.version, "authentication-token-webhook-version", "v1beta1",
		"TokenReview version sent to the webhook: v1 or v1beta1")
	fs.DurationVar(&f.cacheTTL, "authentication-token-webhook-cache-ttl", 2*time.Minute,
		"how long the webhook's answers are cached")
	fs.StringVar(&f.apiAudiences, "api-audiences", "",
		"comma-separated API audiences of this server (none when empty)")
	// No flag in kube-apiserver; 0 here isolates the webhook's own cache.
	fs.DurationVar(&f.successTTL, "token-success-cache-ttl", 10*time.Second,
		"kube-apiserver's fixed cache of the token union's successes (TokenSuccessCacheTTL)")
}

func (f webhookFlags) enabled() bool { return f.configFile != "" }

func (f webhookFlags) audiences() authenticator.Audiences {
	var auds authenticator.Audiences
	for _, a := range strings.Split(f.apiAudiences, ",") {
		if a = strings.TrimSpace(a); a != "" {
			auds = append(auds, a)
		}
	}
	return auds
}

// applyTo replaces the client-certificate authenticator with the union kube-apiserver builds,
// and lets any authenticated user create a SelfSubjectReview.
func (f webhookFlags) applyTo(cfg *genericapiserver.Config, clientCA dynamiccertificates.CAContentProvider) error {
	auds := f.audiences()
	clientConfig, err := webhookutil.LoadKubeconfig(f.configFile, nil)
	if err != nil {
		return err
	}
	webhook, err := webhooktoken.New(clientConfig, f.version, auds, *genericoptions.DefaultAuthWebhookRetryBackoff())
	if err != nil {
		return err
	}
	tokenAuth := tokenunion.New(tokencache.New(webhook, false, f.cacheTTL, f.cacheTTL))
	if f.successTTL > 0 {
		tokenAuth = tokencache.New(tokenAuth, true, f.successTTL, 0)
	}
	certAuth := x509request.NewDynamic(clientCA.VerifyOptions, x509request.CommonNameUserConversion)
	cfg.Authentication.Authenticator = group.NewAuthenticatedGroupAdder(requestunion.New(
		certAuth, bearertoken.New(tokenAuth), websocket.NewProtocolAuthenticator(tokenAuth)))
	cfg.Authentication.APIAudiences = auds
	cfg.Authorization.Authorizer = authorizationunion.New(
		authorizerfactory.NewPrivilegedGroups(user.SystemPrivilegedGroup),
		authorizer.AuthorizerFunc(allowSelfSubjectReview))
	return nil
}

// allowSelfSubjectReview is the part of kube-apiserver's system:basic-user role this server needs.
func allowSelfSubjectReview(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if a.IsResourceRequest() && a.GetVerb() == "create" && a.GetAPIGroup() == "authentication.k8s.io" &&
		a.GetResource() == "selfsubjectreviews" && a.GetSubresource() == "" {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

// installSelfSubjectReview serves SelfSubjectReview creates with the request's user (the body is
// not read: it has nothing but type fields). An exact path goes before apiextensions' /apis/.
func installSelfSubjectReview(s *genericapiserver.GenericAPIServer) {
	s.Handler.NonGoRestfulMux.Handle(selfSubjectReviewPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "only POST", http.StatusMethodNotAllowed)
			return
		}
		u, ok := genericapirequest.UserFrom(r.Context())
		if !ok {
			http.Error(w, "no user", http.StatusInternalServerError)
			return
		}
		review := authenticationv1.SelfSubjectReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "SelfSubjectReview"},
			Status: authenticationv1.SelfSubjectReviewStatus{UserInfo: authenticationv1.UserInfo{
				Username: u.GetName(),
				UID:      u.GetUID(),
				Groups:   u.GetGroups(),
			}},
		}
		if extra := u.GetExtra(); len(extra) > 0 {
			review.Status.UserInfo.Extra = map[string]authenticationv1.ExtraValue{}
			for k, v := range extra {
				review.Status.UserInfo.Extra[k] = v
			}
		}
		body, err := json.Marshal(review)
		if err != nil {
			http.Error(w, fmt.Sprintf("encoding: %v", err), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(body)
	}))
}
