#include "grat/server/rich_status.h"

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace grat::server {

grpc::Status rich_status(grpc::StatusCode code, const std::string& message,
                         const std::string& reason, std::chrono::milliseconds retry_after) {
  google::rpc::Status st;
  st.set_code(static_cast<int>(code));
  st.set_message(message);
  google::rpc::ErrorInfo info;
  info.set_reason(reason);
  info.set_domain(kErrorDomain);
  st.add_details()->PackFrom(info);
  if (retry_after.count() > 0) {
    google::rpc::RetryInfo retry;
    retry.mutable_retry_delay()->set_seconds(retry_after.count() / 1000);
    retry.mutable_retry_delay()->set_nanos(static_cast<int>(retry_after.count() % 1000) * 1000000);
    st.add_details()->PackFrom(retry);
  }
  return grpc::Status(code, message, st.SerializeAsString());
}

}  // namespace grat::server
