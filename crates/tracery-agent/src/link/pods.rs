//! Cluster mode on the link: the controller's list of this node's pods goes to the
//! Manager, and the processes it armed because of it are reported like any arm.

use tokio::sync::oneshot;
use tracery_proto::v1::{self, agent_message};

use super::{arm::arm_results, send, worker::Command, Broken, Link, Out};
use crate::pods::PodDirectory;

impl Link {
    /// A new `NodePods` list: pod breakpoints arm in the pods that now match.
    pub(super) async fn node_pods(&mut self, list: v1::NodePods, out: &Out) -> Result<(), Broken> {
        let Some(node) = &self.kubernetes_node else {
            tracing::warn!(
                "ignoring a list of pods: this agent is not in cluster mode (--kubernetes-node)"
            );
            return Ok(());
        };
        let pods = PodDirectory::from_wire(node.clone(), list);
        tracing::info!(pods = pods.len(), "this node's pods changed");
        let (reply, replied) = oneshot::channel();
        self.command(Command::Pods(pods, reply)).await?;
        // Arming reads DWARF: answered aside, as `arm` is, so hits keep flowing.
        let out = out.clone();
        tokio::spawn(async move {
            let Ok(changed) = replied.await else { return };
            for r in changed.iter().flat_map(arm_results) {
                if send(&out, agent_message::Message::ArmResult(r))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(())
    }
}
