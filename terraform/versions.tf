# Providers and state. The state lives in an S3-compatible bucket chosen at init: for
# Cloudflare R2, `terraform init -backend-config=r2.s3.tfbackend` with its bucket, key and
# account filled in (see README.md).
terraform {
  # 1.6.3: the S3 backend's skip_s3_checksum, which R2 needs (r2.s3.tfbackend).
  required_version = ">= 1.6.3"

  required_providers {
    cloudflare = {
      source  = "cloudflare/cloudflare"
      version = "= 5.17.0"
    }
    tls = {
      source  = "hashicorp/tls"
      version = "= 4.1.0"
    }
  }

  backend "s3" {}
}

provider "cloudflare" {
  # CLOUDFLARE_API_TOKEN in the environment: a token allowed to edit DNS, Workers routes,
  # cache rules, tiered cache and API tokens of the zone. Never in a file.
}
