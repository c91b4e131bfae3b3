//! Parameter Store's `GetParameters`, as one SigV4-signed JSON request on the project's HTTP
//! client. The functions make exactly this one SSM call, once per execution environment; the
//! generated `aws-sdk-ssm` client for it weighed 0.76 MB in every function and pushed them over
//! the 8 MB size target. Signing is `aws-sigv4`'s and the credentials chain is `aws-config`'s
//! (both already linked for EventBridge); what is left here is the request and its answer.

use std::collections::HashMap;
use std::time::SystemTime;

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use serde::Deserialize;

const SERVICE: &str = "ssm";
const TARGET: &str = "AmazonSSM.GetParameters";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Where and as whom to call Parameter Store: the SDK configuration's region, credentials
/// chain and (for tests) endpoint override.
pub struct ParameterStore {
    http: reqwest::Client,
    credentials: SharedCredentialsProvider,
    region: String,
    endpoint: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    #[serde(default)]
    parameters: Vec<Parameter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Parameter {
    name: String,
    value: String,
}

/// The service's error body: a type and a message, neither of which carries a value.
#[derive(Deserialize)]
struct ServiceError {
    #[serde(rename = "__type", default)]
    kind: String,
    #[serde(alias = "Message", default)]
    message: String,
}

impl ParameterStore {
    pub fn new(sdk: &aws_config::SdkConfig) -> Result<Self, String> {
        let region = sdk.region().ok_or("no AWS region is configured (AWS_REGION)")?.to_string();
        let credentials = sdk.credentials_provider().ok_or("no AWS credentials provider is configured")?;
        let endpoint = match sdk.endpoint_url() {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("https://ssm.{region}.amazonaws.com"),
        };
        let http = crate::tls::http_client_builder()
            .map_err(|err| format!("TLS setup failed: {err}"))?
            .build()
            .map_err(|err| format!("HTTP client setup failed: {err}"))?;
        Ok(Self { http, credentials, region, endpoint })
    }

    /// The decrypted values of the `names` that exist, by name. Names that do not exist are
    /// simply absent (the service lists them as invalid).
    pub async fn get_parameters(&self, names: &[String]) -> Result<HashMap<String, String>, String> {
        let body = serde_json::to_vec(&serde_json::json!({ "Names": names, "WithDecryption": true }))
            .map_err(|err| err.to_string())?;
        let request = self.signed(body).await?;
        let answer = self.http.execute(request).await.map_err(|err| format!("request failed: {err}"))?;
        let status = answer.status();
        let bytes = answer.bytes().await.map_err(|err| format!("reading the answer failed: {err}"))?;
        if !status.is_success() {
            let error: ServiceError = serde_json::from_slice(&bytes)
                .unwrap_or(ServiceError { kind: String::new(), message: String::new() });
            let kind = error.kind.rsplit('#').next().unwrap_or_default();
            return Err(format!("GetParameters answered {status}: {kind} {}", error.message)
                .trim_end()
                .to_string());
        }
        let answer: Answer = serde_json::from_slice(&bytes)
            .map_err(|err| format!("GetParameters answer unreadable: {err}"))?;
        Ok(answer.parameters.into_iter().map(|p| (p.name, p.value)).collect())
    }

    async fn signed(&self, body: Vec<u8>) -> Result<reqwest::Request, String> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|err| format!("no AWS credentials: {}", with_causes(&err)))?;
        let identity = Identity::from(credentials);
        let url = format!("{}/", self.endpoint);
        let headers = [("content-type", CONTENT_TYPE), ("x-amz-target", TARGET)];
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|err| format!("signing parameters: {err}"))?
            .into();
        let signable = SignableRequest::new("POST", &url, headers.into_iter(), SignableBody::Bytes(&body))
            .map_err(|err| format!("signing: {err}"))?;
        let (instructions, _) =
            sign(signable, &params).map_err(|err| format!("signing: {err}"))?.into_parts();
        let mut request = http::Request::post(&url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let mut request = request.body(body).map_err(|err| format!("request: {err}"))?;
        instructions.apply_to_request_http1x(&mut request);
        reqwest::Request::try_from(request).map_err(|err| format!("request: {err}"))
    }
}

/// The credentials error with its causes, which name the provider that failed, never a key.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
