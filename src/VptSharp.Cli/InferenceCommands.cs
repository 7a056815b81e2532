using System.CommandLine;
using Spectre.Console;
using TorchSharp;
using VptSharp.Data;
using VptSharp.Inference;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Cli;

internal static class InferenceCommands
{
    public static Command Ensemble()
    {
        var c = new Command("ensemble", "combine task files of one task (same backbone, same classes) into a prompt-ensemble file; " +
                                        "eval and predict accept it and average the members' softmax in one backbone pass");
        var tasks = new Argument<string[]>("tasks") { Description = "member task files (task.vpt), at least two", Arity = ArgumentArity.OneOrMore };
        var output = new Option<string>("--out", "-o") { Description = "ensemble file to write", Required = true };
        c.Arguments.Add(tasks);
        c.Options.Add(output);
        c.SetAction(r => Common.Run(() =>
        {
            var ensemble = EnsembleArtifact.FromFiles(r.GetValue(tasks)!);
            string path = r.GetValue(output)!;
            ensemble.Save(path);
            AnsiConsole.MarkupLine(Markup.Escape($"wrote {path}: {ensemble.Members.Count} members " +
                $"({string.Join(", ", ensemble.Members.Select(m => m.Metadata.Method))}), {ensemble.Classes.Length} classes"));
            return 0;
        }));
        return c;
    }

    /// <summary>`vpt info` of an ensemble file: its members, shared classes and backbone.</summary>
    public static int EnsembleInfo(string path)
    {
        var ens = EnsembleArtifact.Load(path);
        var table = new Table().AddColumns("field", "value");
        table.AddRow("ensemble file", $"{Markup.Escape(path)} ({new FileInfo(path).Length:N0} bytes)");
        for (int j = 0; j < ens.Members.Count; j++)
        {
            var md = ens.Members[j].Metadata;
            long count = ens.Members[j].Tensors.Values.Sum(t => t.numel());
            table.AddRow($"member {j + 1}", Markup.Escape($"{ens.Sources[j]}: {md.Method} {md.MethodConfig.ToJsonString()}, {count:N0} parameters"));
        }
        table.AddRow("classes", Markup.Escape($"{ens.Classes.Length}: {string.Join(", ", ens.Classes.Take(10))}{(ens.Classes.Length > 10 ? ", …" : "")}"));
        table.AddRow("backbone", Markup.Escape($"{ens.Backbone.Source} sha256 {ens.Backbone.Sha256}"));
        AnsiConsole.Write(table);
        return 0;
    }
}

/// <summary>What `vpt eval` / `vpt predict` run: a task file's model, or an ensemble file's members on one engine.</summary>
internal sealed class LoadedClassifier : IDisposable
{
    readonly PromptedModel? model;
    readonly EnsemblePredictor? ensemble;
    public string[] Classes { get; }
    public Preprocessing Preprocessing { get; }
    /// <summary>The method, or "ensemble of k: m1, m2, …".</summary>
    public string Method { get; }
    public string BackboneSha256 { get; }

    LoadedClassifier(PromptedModel? model, EnsemblePredictor? ensemble, string[] classes, Preprocessing pre, string method, string sha256) =>
        (this.model, this.ensemble, Classes, Preprocessing, Method, BackboneSha256) = (model, ensemble, classes, pre, method, sha256);

    /// <param name="bf16">Run the backbone in bfloat16 through the multi-task engine (VPT-prefix tasks and ensembles only).</param>
    public static LoadedClassifier Load(string path, string? backboneOverride, string device, bool bf16 = false)
    {
        bool ensembleFile = EnsembleArtifact.IsEnsembleFile(path);
        if (ensembleFile || bf16)
        {
            if (Devices.Parse(device).type != DeviceType.CPU)
                throw new ArgumentException($"--device {device}: ensemble files and --bf16 run on the CPU multi-task engine");
            // A single task under --bf16 is a one-member ensemble: the same engine path, one prefix.
            var art = ensembleFile ? EnsembleArtifact.Load(path) : EnsembleArtifact.Single(path, TaskArtifact.Load(path));
            var predictor = art.LoadPredictor(backboneOverride, bf16 ? ScalarType.BFloat16 : ScalarType.Float32);
            string method = art.Members.Count == 1 && !ensembleFile ? art.Members[0].Metadata.Method
                : $"ensemble of {art.Members.Count}: {string.Join(", ", art.Members.Select(m => m.Metadata.Method))}";
            return new LoadedClassifier(null, predictor, art.Classes, art.Preprocessing, method + (bf16 ? " (bf16 backbone)" : ""), art.Backbone.Sha256);
        }
        var task = TaskArtifact.Load(path);
        var m = task.LoadModel(backboneOverride, path);
        m.MoveTo(Devices.Parse(device));
        return new LoadedClassifier(m, null, task.Metadata.Classes, task.Metadata.Preprocessing, task.Metadata.Method, task.Metadata.Backbone.Sha256);
    }

    public EvalResult Evaluate(ImageDataset data, int batchSize, string device) =>
        ensemble?.Evaluate(data, batchSize) ?? Evaluation.Evaluate(model!, data, Preprocessing, batchSize, device);

    public List<ClassScore[]> TopK(Tensor images, int k) =>
        ensemble?.TopK(images, k) ?? Predictor.TopK(model!, images, Classes, k);

    public void Dispose()
    {
        ensemble?.Dispose(); // disposes the backbone it loaded
        model?.Dispose();    // a task model does not own its backbone; the process ends right after
    }
}
