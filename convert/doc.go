// Package convert reads the checkpoint formats people have (diffusers
// folders with safetensors or PyTorch .bin weights, PyTorch zip+pickle
// checkpoints) and writes dalle2's single-file weight format through loader.
//
// Convert is the whole job: OpenPipeline reads model_index.json and finds
// each component's configuration and weights (safetensors preferred, then
// .bin; sharded *.index.json weight maps are followed), and every
// component, configuration, tokenizer file and tensor goes into one file
// that appears only when everything succeeded. Float weights are stored as
// Options.DType: f32, f16, or q8, for which Policy.DType (policy.go) picks
// the tensors stored as Q8_0 and stores the others as f16; the Report totals
// tensors, parameters and bytes before and after compression per stored
// dtype.
//
// PyTorch checkpoints are read by OpenTorch / ReadTorchFile, which parse the
// torch.save zip archive and its data.pkl with Unpickle. Unpickle is a data
// parser for the pickle subset torch.save writes (spec §14), not an
// interpreter: it never imports or calls anything. Globals must be on an
// explicit allow-list (collections.OrderedDict, torch._utils'
// _rebuild_tensor_v2 / _rebuild_parameter / _rebuild_parameter_with_state,
// and the torch.*Storage classes); any other global, such as os.system or
// builtins.eval, is an error naming it and its byte offset. A Lightning
// .ckpt may opt in to PickleOptions.AllowOpaque, which turns unknown globals
// into inert placeholders so that its "state_dict" can be extracted. All
// input is treated as hostile: lengths are checked against the remaining
// input before allocating, tensor views are checked against their storages
// with overflow-checked arithmetic, and nothing panics on bad data.
package convert
