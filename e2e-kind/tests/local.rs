//! Every scenario on the local west/east clusters, shared by the run.
//! Tests with `wan` in their name change the WAN, and tests named `mesh_*`
//! share (and some break on purpose, then restore) the installed mesh:
//! `.config/nextest.toml` runs all of those one at a time.

use mesh_e2e::local::LocalProvider;
use mesh_e2e::scenarios;

macro_rules! scenario {
    ($name:ident) => {
        #[tokio::test]
        async fn $name() {
            let provider = LocalProvider::shared().await;
            if let Err(e) = scenarios::$name(&provider).await {
                panic!("{} on the local clusters: {e:#}", stringify!($name));
            }
        }
    };
}

scenario!(podinfo_answers_by_service_name);
scenario!(pods_cannot_reach_the_other_clusters_pod_ips);
scenario!(deleted_pods_are_replaced);
scenario!(containers_run_as_their_user);
scenario!(mesh_meshed_app_talks_over_mtls);
scenario!(mesh_check_explains_a_broken_control_plane);
scenario!(mesh_install_reapplied_keeps_injection_and_check_names_a_broken_webhook);
scenario!(mesh_upgrade_rotates_the_issuer_under_load);
scenario!(mesh_helm_upgrade_reuse_values_keeps_the_mesh_checked);
scenario!(mesh_trust_anchor_rotation_in_four_steps_under_load);
scenario!(mesh_multicluster_check_names_an_unreachable_link);
scenario!(mesh_gateway_carries_a_west_call_to_east);
scenario!(mesh_policy_the_guides_manifests_are_enforced);
scenario!(mesh_policy_audit_counts_and_an_opaque_server_refuses_and_closes);
scenario!(mesh_routes_the_guides_httproutes_retry_time_out_and_split);
scenario!(mesh_multicluster_wan_cut_keeps_mirrors_and_a_moved_gateway_is_followed);
scenario!(mesh_multicluster_check_names_mismatched_anchors);
scenario!(mesh_multicluster_quic_and_tcp_both_carry_traffic);
scenario!(mesh_multicluster_a_replaced_gateway_costs_seconds_not_a_minute);
scenario!(mesh_multicluster_statefulset_pods_are_reached_by_name);
scenario!(mesh_failover_moves_traffic_by_success_rate_and_back);
scenario!(mesh_failover_manages_an_httproute_split);
scenario!(mesh_failover_wan_cut_moves_traffic_to_the_local_secondary);
scenario!(mesh_failover_ignores_noise_and_aborts_a_relapsing_failback);
scenario!(mesh_viz_stat_and_edges_see_what_the_callers_counted);
scenario!(mesh_viz_sees_a_mirrored_service_across_clusters);
scenario!(wan_cut_breaks_and_restore_heals_a_load_balancer_call);
